-- Deliver a cycle's batch if its epoch is current: append it, count its bloom check and
-- close its journal entry, in one atomic step. Returns the entry id, "" when nothing was
-- left to append, or false when the topic changed meanwhile (the batch is dropped).
-- Idempotent: once_key remembers the answer for once_ttl_ms, so a resent call (redis-py
-- retries a pipeline whose reply was lost; a cycle retries after a Redis outage; the
-- journal is recovered) appends and counts once.
local state_key, batches_key, counters_key, once_key, journal_key, bloom_meta_key = unpack(KEYS)
local epoch, batch_json, attributes, call_id, checked, filtered, once_ttl_ms = unpack(ARGV)
local done = redis.call('GET', once_key)
if done then
  if done == '-' then return false end
  return done
end
if call_id ~= '' then
  redis.call('HDEL', journal_key, call_id)
end
if redis.call('HGET', state_key, 'epoch') ~= epoch then
  if attributes ~= '0' then
    redis.call('HINCRBY', counters_key, 'batches_discarded', 1)
  end
  redis.call('SET', once_key, '-', 'PX', once_ttl_ms)
  return false
end
-- a new topic drops the filter: its counters must not outlive it
if checked ~= '0' and redis.call('HEXISTS', bloom_meta_key, 'generation') == 1 then
  redis.call('HINCRBY', bloom_meta_key, 'total_candidates', checked)
  redis.call('HINCRBY', bloom_meta_key, 'filtered_candidates', filtered)
  redis.call('HINCRBY', bloom_meta_key, 'items', attributes)
end
local id = ''
if attributes ~= '0' then
  redis.call('HINCRBY', counters_key, 'batches_appended', 1)
  redis.call('HINCRBY', counters_key, 'attributes_appended', attributes)
  id = redis.call('XADD', batches_key, '*', 'epoch', epoch, 'data', batch_json)
end
redis.call('SET', once_key, id, 'PX', once_ttl_ms)
return id
