-- Give a lane a new dispatch token (compare-and-set on the lane's current token).
-- expected "" = the lane must be absent; failures -1 = keep the lane's count.
-- Returns 1 when assigned (or when this very token already is: a retried call); 0 when the
-- phase is not running / the epoch is old / CAS failed.
-- message "" = none; else it is pushed onto queue_key (the provider's broker list) when the
-- token is assigned, never by a retried call (its first run pushed it), and registered as
-- kombu registers a message it delivers (unacked index: token -> time in seconds; unacked
-- hash: token -> [message, exchange, routing key]): its consumer skips that round trip.
-- When the producer is stopping and the lane was the caller's, the lane is removed and
-- the phase becomes "stopped" once no lane is running or reserved.
local state_key, lanes_key, queue_key, unacked_key, unacked_index_key = unpack(KEYS)
local lane, expected, token, provider, epoch, now_ms, failures, message = unpack(ARGV)
--!include _release_lane.lua
failures = tonumber(failures)
local phase, current_epoch = unpack(redis.call('HMGET', state_key, 'phase', 'epoch'))
local raw = redis.call('HGET', lanes_key, lane)
local current = raw and cjson.decode(raw) or nil
local current_token = current and current.token or ''
if current_token == token then return 1 end  -- a retried call that already assigned it
if current_token ~= expected then
  return 0
end
if phase ~= 'running' or current_epoch ~= epoch then
  release_lane(state_key, lanes_key, current and lane or nil, now_ms)
  return 0
end
local record = {token = token, provider = provider, status = 'queued', worker = '',
                since_ms = tonumber(now_ms), until_ms = 0, reason = '',
                failures = current and current.failures or 0}
if failures >= 0 then record.failures = failures end
redis.call('HSET', lanes_key, lane, cjson.encode(record))
if message ~= '' then
  redis.call('LPUSH', queue_key, message)
  redis.call('ZADD', unacked_index_key, tonumber(now_ms) / 1000, token)
  redis.call('HSET', unacked_key, token, '[' .. message .. ', "", ' .. cjson.encode(provider) .. ']')
end
return 1
