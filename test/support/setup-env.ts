// Every test process: UTC, and the test database unless one is given.
process.env.TZ = 'UTC';
process.env.DATABASE_URL ??= 'postgresql://postgres@127.0.0.1:5432/spotinference_test';
process.env.REDIS_URL ??= 'redis://127.0.0.1:6379';
