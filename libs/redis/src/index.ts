export { RedisModule, REDIS, RedisKeys, redisOptions, deadlineRedisOptions, closeRedis } from './redis.module';
