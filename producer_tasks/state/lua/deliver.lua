-- Append a batch to the stream only if it belongs to the current epoch (topic).
-- Returns the entry id, or false when the topic changed meanwhile.
-- Idempotent: once_key remembers the answer for once_ttl_ms, so a resent call (redis-py
-- retries a pipeline whose reply was lost; a cycle retries after a Redis outage) appends once.
local state_key, batches_key, counters_key, once_key = unpack(KEYS)
local epoch, batch_json, attributes, once_ttl_ms = unpack(ARGV)
local done = redis.call('GET', once_key)
if done then
  if done == '-' then return false end
  return done
end
if redis.call('HGET', state_key, 'epoch') ~= epoch then
  redis.call('HINCRBY', counters_key, 'batches_discarded', 1)
  redis.call('SET', once_key, '-', 'PX', once_ttl_ms)
  return false
end
redis.call('HINCRBY', counters_key, 'batches_appended', 1)
redis.call('HINCRBY', counters_key, 'attributes_appended', attributes)
local id = redis.call('XADD', batches_key, '*', 'epoch', epoch, 'data', batch_json)
redis.call('SET', once_key, id, 'PX', once_ttl_ms)
return id
