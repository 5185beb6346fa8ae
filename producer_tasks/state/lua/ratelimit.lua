-- Fleet-wide token buckets (requests and tokens per minute) for one provider.
-- rpm / tpm 0 = unlimited. A bucket holds up to one minute's budget and refills
-- continuously. Either both buckets are debited, or neither is and the answer is how
-- many ms to wait. Returns 0 or wait_ms.
local requests_key, tokens_key = unpack(KEYS)
local now_ms, rpm, tpm, tokens = unpack(ARGV)
local now = tonumber(now_ms)
local function level(key, per_minute)
  local state = redis.call('HMGET', key, 'level', 'at')
  local lvl = tonumber(state[1]) or per_minute
  local at = tonumber(state[2]) or now
  lvl = math.min(per_minute, lvl + (now - at) * per_minute / 60000)
  return lvl
end
local limits = {{requests_key, tonumber(rpm), 1}, {tokens_key, tonumber(tpm), tonumber(tokens)}}
local wait = 0
local levels = {}
for i, l in ipairs(limits) do
  if l[2] > 0 then
    local need = math.min(l[3], l[2])
    local lvl = level(l[1], l[2])
    levels[i] = lvl
    if lvl < need then
      local w = math.ceil((need - lvl) * 60000 / l[2])
      if w > wait then wait = w end
    end
  end
end
if wait > 0 then return wait end
for i, l in ipairs(limits) do
  if l[2] > 0 then
    redis.call('HSET', l[1], 'level', levels[i] - math.min(l[3], l[2]), 'at', now)
    redis.call('PEXPIRE', l[1], 120000)
  end
end
return 0
