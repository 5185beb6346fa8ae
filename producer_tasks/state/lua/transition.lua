-- Move a lane to a new status (running|waiting) if its token is still current.
-- failures -1 = keep; epoch "" = do not check.
-- "running" additionally requires phase == running and the epoch to match: that is the
-- moment a cycle is allowed to spend tokens.
-- "running" with a budget (> 0): refused once the producer's spend reached it (the
-- budget is recorded as reached; no new call starts anywhere in the fleet).
-- "running" is also refused while the lane's provider (health_key) is Unhealthy or cooling
-- down: a cycle whose view was read a moment before the provider went down does not call it.
-- Returns 1 on success, 0 when stopped/old epoch (lane released), -1 when the token is
-- stale, -2 when the budget is spent (nothing changed: the caller stops the fleet), -3 when
-- the provider became unusable (nothing changed: the caller re-dispatches), -4 when the
-- quota could be reached without this call (`producer run --count`: the attributes appended
-- plus at most per_call from each call in flight reach the target; nothing changed, the
-- caller parks the lane). So every call that starts is one the count still needs, and the
-- count's last attribute always comes from a call that started before it arrived.
local state_key, lanes_key, spend_key, health_key, quota_key, counters_key = unpack(KEYS)
local lane, token, status, worker, now_ms, until_ms, reason, failures, epoch, budget_usd = unpack(ARGV)
--!include _release_lane.lua
failures = tonumber(failures)
local raw = redis.call('HGET', lanes_key, lane)
if not raw then return -1 end
local record = cjson.decode(raw)
if record.token ~= token then return -1 end
if status == 'running' or status == 'waiting' then
  local phase, current_epoch = unpack(redis.call('HMGET', state_key, 'phase', 'epoch'))
  if phase ~= 'running' or (epoch ~= '' and current_epoch ~= epoch) then
    release_lane(state_key, lanes_key, lane, now_ms)
    return 0
  end
end
if status == 'running' then
  local health = redis.call('HMGET', health_key, 'status', 'cooldown_until_ms')
  if health[1] == 'unhealthy' or tonumber(health[2] or '0') > tonumber(now_ms) then return -3 end
end
local budget = tonumber(budget_usd) or 0
if status == 'running' and budget > 0 then
  local spent = tonumber(redis.call('HGET', spend_key, 'usd') or '0')
  if spent >= budget then
    if redis.call('HSETNX', spend_key, 'reached_ms', now_ms) == 1 then
      redis.call('HSET', spend_key, 'budget', budget_usd)
    end
    return -2
  end
end
if status == 'running' then
  local quota = redis.call('HMGET', quota_key, 'target', 'per_call')
  local target = tonumber(quota[1])
  if target then
    local expected = tonumber(redis.call('HGET', counters_key, 'attributes_appended') or '0')
    if expected < target then  -- add what the calls in flight may still bring
      local per_call = tonumber(quota[2]) or 0
      for _, other in ipairs(redis.call('HVALS', lanes_key)) do
        if cjson.decode(other).status == 'running' then expected = expected + per_call end
      end
    end
    if expected >= target then return -4 end
  end
end
record.status = status
record.worker = worker
record.since_ms = tonumber(now_ms)
record.until_ms = tonumber(until_ms)
record.reason = reason
if failures >= 0 then record.failures = failures end
redis.call('HSET', lanes_key, lane, cjson.encode(record))
return 1
