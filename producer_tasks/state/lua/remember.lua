-- Remember, for the current topic, what was delivered and which candidates came back again
-- (filtered as known): the novelty prompts' "already known" record; count the cycle for the
-- facet it focused on (and what it brought); store the facets a cycle asked the model for.
-- And what the cycle's prompt strategy brought on its provider: that provider's strategies
-- (`strategies_json`) keep `decay` of their evidence, this one gains the cycle (one call, its
-- new attributes, its cost units, and the new attributes the provider's recent yield, kept
-- with `trend_keep`, would have brought for that cost) and one cycle tried
-- (generation/strategy.py).
-- Only for the current epoch (a cycle of an old topic records nothing); the record bounded
-- to `cap` items, the least repeated dropped first. Returns the record's size (0 when this
-- call added no item to it).
local state_key, known_key, facets_key, yield_key, strategy_key = unpack(KEYS)
local epoch, delivered_json, repeated_json, facet, brought, proposed_json, cap, ttl_ms,
      provider, strategy, cost, decay, trend_keep, strategies_json = unpack(ARGV)
if redis.call('HGET', state_key, 'epoch') ~= epoch then return 0 end
if strategy ~= '' then
  -- one HMGET, one HSET: the provider's recent yield per cost unit, whatever the strategy (it
  -- falls as the topic saturates; this cycle is compared with what it would have brought at
  -- that yield), then each of its strategies' metrics
  local all = provider .. '/_all/'
  local metrics = {'cycles', 'new', 'cost', 'expected'}
  local names = cjson.decode(strategies_json)
  local fields = {all .. 'new', all .. 'cost', all .. 'cycles'}
  for _, name in ipairs(names) do
    for _, metric in ipairs(metrics) do fields[#fields + 1] = provider .. '/' .. name .. '/' .. metric end
  end
  local values = redis.call('HMGET', strategy_key, unpack(fields))
  local recent_new, recent_cost, recent_cycles = tonumber(values[1] or '0'), tonumber(values[2] or '0'),
                                                 tonumber(values[3] or '0')
  local expected = tonumber(brought)
  if recent_cost > 0 then expected = tonumber(cost) * recent_new / recent_cost end
  local trend, keep = tonumber(trend_keep), tonumber(decay)
  local updated = {all .. 'new', string.format('%.6f', recent_new * trend + tonumber(brought)),
                   all .. 'cost', string.format('%.6f', recent_cost * trend + tonumber(cost)),
                   all .. 'cycles', string.format('%.6f', recent_cycles * trend + 1)}
  local gained = {cycles = 1, new = tonumber(brought), cost = tonumber(cost), expected = expected}
  for i = 4, #fields do
    local name, metric = names[math.floor((i - 4) / #metrics) + 1], metrics[(i - 4) % #metrics + 1]
    local value = tonumber(values[i] or '0') * keep
    if name == strategy then value = value + gained[metric] end
    updated[#updated + 1] = fields[i]
    updated[#updated + 1] = string.format('%.6f', value)
  end
  redis.call('HSET', strategy_key, unpack(updated))
  redis.call('HINCRBY', strategy_key, provider .. '/' .. strategy .. '/tried', 1)
  redis.call('PEXPIRE', strategy_key, ttl_ms)
end
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
