-- Move a lane to a new status if its token is still current.
-- KEYS[1] state hash, KEYS[2] lanes hash
-- ARGV: lane, token, status (reserved|running|waiting), worker, now_ms, until_ms, reason,
--       failures (-1 = keep), epoch ("" = do not check)
-- "running" additionally requires phase == running and the epoch to match: that is the
-- moment a cycle is allowed to spend tokens.
-- Returns 1 on success, 0 when stopped/old epoch (lane released), -1 when the token is stale.
local lane, token, status, worker, now, until_ms, reason, failures, epoch =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[9]
local raw = redis.call('HGET', KEYS[2], lane)
if not raw then return -1 end
local record = cjson.decode(raw)
if record.token ~= token then return -1 end
if status == 'running' or status == 'waiting' then
  local phase = redis.call('HGET', KEYS[1], 'phase')
  local current_epoch = redis.call('HGET', KEYS[1], 'epoch')
  if phase ~= 'running' or (epoch ~= '' and current_epoch ~= epoch) then
    release_lane(KEYS[1], KEYS[2], lane, now)
    return 0
  end
end
if status == 'reserved' and record.status ~= 'queued' then return -1 end
record.status = status
record.worker = worker
record.since_ms = tonumber(now)
record.until_ms = tonumber(until_ms)
record.reason = reason
if failures >= 0 then record.failures = failures end
redis.call('HSET', KEYS[2], lane, cjson.encode(record))
return 1
