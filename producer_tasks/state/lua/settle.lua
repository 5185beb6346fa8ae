-- Settle the entries the bridge handled: those written to the orchestrator are copied,
-- by Redis itself, to the resend window (a second stream) and their new ids returned in
-- order ("" for an entry deleted meanwhile); then every handled entry is acknowledged and
-- deleted, and the window forgets entries older than trim_to ("" = keep all). Atomic.
local batches_key, window_key = unpack(KEYS)
local group, written_json, done_json, trim_to = unpack(ARGV)
local kept = {}
for i, id in ipairs(cjson.decode(written_json)) do
  local found = redis.call('XRANGE', batches_key, id, id)
  if found[1] then
    kept[i] = redis.call('XADD', window_key, '*', unpack(found[1][2]))
  else
    kept[i] = ''
  end
end
local done = cjson.decode(done_json)
for first = 1, #done, 500 do  -- Lua's unpack has a limit
  local ids = {}
  for i = first, math.min(first + 499, #done) do ids[#ids + 1] = done[i] end
  redis.call('XACK', batches_key, group, unpack(ids))
  redis.call('XDEL', batches_key, unpack(ids))
end
if trim_to ~= '' then
  redis.call('XTRIM', window_key, 'MINID', trim_to)
end
return kept
