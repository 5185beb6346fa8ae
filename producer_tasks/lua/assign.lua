-- Give a lane a new dispatch token (compare-and-set on the lane's current token).
-- KEYS[1] state hash, KEYS[2] lanes hash
-- ARGV: lane, expected token ("" = the lane must be absent), new token, provider, epoch,
--       now_ms, failures (-1 = keep the lane's count)
-- Returns 1 when assigned; 0 when the phase is not running / the epoch is old / CAS failed.
-- When the producer is stopping and the lane was the caller's, the lane is removed and
-- the phase becomes "stopped" once no lane is running or reserved.
local lane, expected, token, provider, epoch, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local failures = tonumber(ARGV[7])
local phase = redis.call('HGET', KEYS[1], 'phase')
local current_epoch = redis.call('HGET', KEYS[1], 'epoch')
local raw = redis.call('HGET', KEYS[2], lane)
local current = raw and cjson.decode(raw) or nil
local current_token = current and current.token or ''
if current_token ~= expected then
  return 0
end
if phase ~= 'running' or current_epoch ~= epoch then
  release_lane(KEYS[1], KEYS[2], current and lane or nil, now)
  return 0
end
local record = {token = token, provider = provider, status = 'queued', worker = '',
                since_ms = tonumber(now), until_ms = 0, reason = '',
                failures = current and current.failures or 0}
if failures >= 0 then record.failures = failures end
redis.call('HSET', KEYS[2], lane, cjson.encode(record))
return 1
