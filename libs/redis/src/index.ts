export { RedisModule, REDIS, RedisKeys, redisOptions } from './redis.module';
