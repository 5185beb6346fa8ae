-- Append a batch to the stream only if it belongs to the current epoch (topic).
-- KEYS[1] state hash, KEYS[2] batches stream
-- ARGV: epoch, batch JSON
-- Returns the entry id, or false when the topic changed meanwhile.
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return false
end
return redis.call('XADD', KEYS[2], '*', 'epoch', ARGV[1], 'data', ARGV[2])
