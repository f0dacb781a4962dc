export { RedisModule, REDIS, RedisKeys, redisOptions, deadlineRedis, closeRedis } from './redis.module';
