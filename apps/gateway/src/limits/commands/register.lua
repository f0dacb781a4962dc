-- Registers a gateway as alive and counts the live ones: while Redis is unreachable each gateway admits
-- budgeted requests within its share (1 / live gateways) of the headroom it last saw.
--
-- KEYS[1]  the gateway registry (zset: gateway id -> last heartbeat, ms)
-- ARGV[1]  the gateway's id                   ARGV[2]  now, epoch ms
--
-- Returns the number of gateways heard from in the last 30 s (this one included). Entries older than
-- 10 minutes are removed.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - 600000)
redis.call('PEXPIRE', KEYS[1], 600000)
return redis.call('ZCOUNT', KEYS[1], tonumber(ARGV[2]) - 30000, '+inf')
