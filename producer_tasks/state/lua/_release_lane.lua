-- A helper pasted into the lane scripts by their include line (never loaded alone).

-- Remove a lane (if any) from the lanes hash; when the producer is stopping and no lane
-- is running or reserved any more, the phase becomes "stopped".
local function release_lane(state_key, lanes_key, lane, now)
  if lane ~= nil then redis.call('HDEL', lanes_key, lane) end
  if redis.call('HGET', state_key, 'phase') ~= 'stopping' then return end
  for _, v in ipairs(redis.call('HVALS', lanes_key)) do
    local l = cjson.decode(v)
    if l.status == 'running' or l.status == 'reserved' then return end
  end
  redis.call('HSET', state_key, 'phase', 'stopped', 'updated_ms', now)
end
