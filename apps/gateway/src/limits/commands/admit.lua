-- Admits one request: its key's per-minute limits and its org's monthly budget, in one round trip.
--
-- KEYS[1]  the key's rate window for this minute (hash: r = requests, t = tokens leased)
-- KEYS[2]  the org's month ledger (hash: spent; r:<gw> reserved by gateway gw; t:<gw> when gw was last
--          seen; q:<gw> the last settle batch of gw applied, see settle.lua)
-- KEYS[3]  the gateway registry (zset: gateway id -> last heartbeat, ms; see register.lua)
-- ARGV[1]  1: lease from the rate window; 0: no limits to check
-- ARGV[2]  requests to lease (at most)        ARGV[3]  tokens to lease (at most)
-- ARGV[4]  tokens this request needs (the lease must cover them)
-- ARGV[5]  rpm limit (0 = none)               ARGV[6]  tpm limit (0 = none)
-- ARGV[7]  the org's budget in nano-USD, or -1 for none
-- ARGV[8]  this request's worst case, nano-USD
-- ARGV[9]  this gateway's id                  ARGV[10] now, epoch ms
-- ARGV[11] ledger TTL, ms
--
-- Returns {verdict, a, b, used, gateways}:
--   {0, requests, tokens leased, ledger total after this reservation, live gateways}  admitted
--   {1, 0, 0, 0, 0}  requests exhausted        {2, 0, 0, 0, 0}  tokens exhausted
--   {3, 0, 0, 0, 0}  the ledger is missing: the caller seeds it (seed.lua) and asks again
--   {4, used, 0, used, live gateways}  spent + reserved + this worst case would pass the budget
-- The ledger total is spent plus the reservations of gateways seen within a minute; reservations of
-- gateways unseen for longer (crashed) are dropped. Live gateways count the registry's last 30 s.
local budget = tonumber(ARGV[7])
local now = tonumber(ARGV[10])
local used = 0
local gateways = 0
if budget >= 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then return {3, 0, 0, 0, 0} end
  local h = redis.call('HGETALL', KEYS[2])
  local alive = {}
  for i = 1, #h, 2 do
    if h[i] == 'spent' then used = used + tonumber(h[i + 1])
    elseif string.sub(h[i], 1, 2) == 't:' then alive[string.sub(h[i], 3)] = tonumber(h[i + 1]) >= now - 60000 end
  end
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'r:' then
      local gw = string.sub(h[i], 3)
      if alive[gw] then used = used + tonumber(h[i + 1]) else redis.call('HDEL', KEYS[2], h[i], 't:' .. gw) end
    end
  end
  gateways = redis.call('ZCOUNT', KEYS[3], now - 30000, '+inf')
  if used + tonumber(ARGV[8]) > budget then return {4, used, 0, used, gateways} end
end
local gr, gt = 0, 0
if ARGV[1] == '1' then
  local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
  local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  gr = tonumber(ARGV[2])
  gt = tonumber(ARGV[3])
  local rpm = tonumber(ARGV[5])
  local tpm = tonumber(ARGV[6])
  if rpm > 0 then gr = math.min(gr, rpm - r) end
  if tpm > 0 then gt = math.min(gt, tpm - t) end
  if gr < 1 then return {1, 0, 0, 0, 0} end
  if gt < tonumber(ARGV[4]) then return {2, 0, 0, 0, 0} end
  redis.call('HINCRBY', KEYS[1], 'r', gr)
  redis.call('HINCRBY', KEYS[1], 't', gt)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if budget >= 0 then
  redis.call('HINCRBY', KEYS[2], 'r:' .. ARGV[9], ARGV[8])
  redis.call('HSET', KEYS[2], 't:' .. ARGV[9], now)
  redis.call('PEXPIRE', KEYS[2], ARGV[11])
  used = used + tonumber(ARGV[8])
end
return {0, gr, gt, used, gateways}
