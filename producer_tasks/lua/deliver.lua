-- Append a batch to the stream only if it belongs to the current epoch (topic).
-- KEYS[1] state hash, KEYS[2] batches stream, KEYS[3] counters hash
-- ARGV: epoch, batch JSON, number of attributes
-- Returns the entry id, or false when the topic changed meanwhile.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[3], 'batches_discarded', 1)
  return false
end
redis.call('HINCRBY', KEYS[3], 'batches_appended', 1)
redis.call('HINCRBY', KEYS[3], 'attributes_appended', ARGV[3])
return redis.call('XADD', KEYS[2], '*', 'epoch', ARGV[1], 'data', ARGV[2])
