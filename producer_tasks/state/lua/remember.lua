-- Remember, for the current topic, what was delivered and which candidates came back again
-- (filtered as known): the novelty prompts' "already known" record; count the cycle for the
-- facet it focused on (and what it brought); store the facets a cycle asked the model for.
-- Only for the current epoch (a cycle of an old topic records nothing); the record bounded
-- to `cap` items, the least repeated dropped first. Returns the record's size (0 when this
-- call added no item to it).
local state_key, known_key, facets_key, yield_key = unpack(KEYS)
local epoch, delivered_json, repeated_json, facet, brought, proposed_json, cap, ttl_ms = unpack(ARGV)
if redis.call('HGET', state_key, 'epoch') ~= epoch then return 0 end
local delivered = cjson.decode(delivered_json)
for first = 1, #delivered, 500 do  -- one ZADD per 500 items (Lua's unpack has a limit)
  local members = {}
  for i = first, math.min(first + 499, #delivered) do
    members[#members + 1] = 0
    members[#members + 1] = delivered[i]
  end
  redis.call('ZADD', known_key, 'NX', unpack(members))
end
for _, item in ipairs(cjson.decode(repeated_json)) do
  redis.call('ZINCRBY', known_key, 1, item)
end
if facet ~= '' and redis.call('HEXISTS', facets_key, facet) == 1 then
  redis.call('HINCRBY', facets_key, facet, 1)
  redis.call('HINCRBY', yield_key, facet, brought)
end
for _, name in ipairs(cjson.decode(proposed_json)) do
  if redis.call('HSETNX', facets_key, name, 0) == 1 then
    redis.call('HSET', yield_key, name, 0)
  end
end
-- the known record changes only when items were added (the avoid list's; else it is empty)
local size = 0
if #delivered > 0 or repeated_json ~= '[]' then
  size = redis.call('ZCARD', known_key)
  if size > tonumber(cap) then
    redis.call('ZREMRANGEBYRANK', known_key, 0, size - tonumber(cap) - 1)
    size = tonumber(cap)
  end
  if size > 0 then redis.call('PEXPIRE', known_key, ttl_ms) end
end
redis.call('PEXPIRE', facets_key, ttl_ms)  -- 0, nothing done, while there are no facets
redis.call('PEXPIRE', yield_key, ttl_ms)
return size
