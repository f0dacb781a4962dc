-- Seeds a missing ledger with the month's spend so far, read from usage_events (the first writer wins).
--
-- KEYS[1]  the org's month ledger (see admit.lua)
-- ARGV[1]  nano-USD spent this month          ARGV[2]  ledger TTL, ms
--
-- Returns 1.
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
