-- Remember, for the current topic, what was delivered and which candidates came back again
-- (filtered as known): the novelty prompts' "already known" record. Only for the current
-- epoch (a cycle of an old topic records nothing); bounded to `cap` items, the least
-- repeated dropped first. Returns the record's size.
local state_key, known_key = unpack(KEYS)
local epoch, delivered_json, repeated_json, cap, ttl_ms = unpack(ARGV)
if redis.call('HGET', state_key, 'epoch') ~= epoch then return 0 end
for _, item in ipairs(cjson.decode(delivered_json)) do
  redis.call('ZADD', known_key, 'NX', 0, item)
end
for _, item in ipairs(cjson.decode(repeated_json)) do
  redis.call('ZINCRBY', known_key, 1, item)
end
local size = redis.call('ZCARD', known_key)
if size > tonumber(cap) then
  redis.call('ZREMRANGEBYRANK', known_key, 0, size - tonumber(cap) - 1)
  size = tonumber(cap)
end
redis.call('PEXPIRE', known_key, ttl_ms)
return size
