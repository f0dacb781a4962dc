export { RedisModule, REDIS, RedisKeys, redisOptions, closeRedis } from './redis.module';
