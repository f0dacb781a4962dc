-- Settles what one gateway spent in an org's month ledger, safely re-sent: a batch whose reply was lost
-- (a command deadline, a dropped connection) is sent again with the same sequence number and applied once.
--
-- KEYS[1]  the org's month ledger (see admit.lua)
-- ARGV[1]  the gateway's id
-- ARGV[2]  the batch's sequence number (per gateway and ledger, increasing; 0: no spend in this call)
-- ARGV[3]  nano-USD the batch's requests cost
-- ARGV[4]  the reservations this gateway holds in the ledger now, nano-USD: written as is, not added, so a
--          reservation whose admit may or may not have been applied (its reply never came) cannot stick
-- ARGV[5]  now, epoch ms                      ARGV[6]  ledger TTL, ms
--
-- Returns 1, or 0 when the ledger is missing (nothing written: it is seeded from usage_events when next
-- needed, and those include the batch's requests).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seq = tonumber(ARGV[2])
if seq > 0 then
  local applied = tonumber(redis.call('HGET', KEYS[1], 'q:' .. ARGV[1]) or '0')
  if seq > applied then
    redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
    redis.call('HSET', KEYS[1], 'q:' .. ARGV[1], seq)
  end
end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[4], 't:' .. ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
