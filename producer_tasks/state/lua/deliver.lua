-- Append a batch to the stream only if it belongs to the current epoch (topic).
-- Returns the entry id, or false when the topic changed meanwhile.
local state_key, batches_key, counters_key = unpack(KEYS)
local epoch, batch_json, attributes = unpack(ARGV)
if redis.call('HGET', state_key, 'epoch') ~= epoch then
  redis.call('HINCRBY', counters_key, 'batches_discarded', 1)
  return false
end
redis.call('HINCRBY', counters_key, 'batches_appended', 1)
redis.call('HINCRBY', counters_key, 'attributes_appended', attributes)
return redis.call('XADD', batches_key, '*', 'epoch', epoch, 'data', batch_json)
