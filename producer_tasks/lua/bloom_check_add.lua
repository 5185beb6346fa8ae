-- One atomic check-and-add of a batch against the shared bloom filter.
-- KEYS[1] bits (string), KEYS[2] meta hash
-- ARGV: generation the offsets were computed for, k, then k offsets per candidate
-- BITFIELD ... SET u1 offset 1 returns each bit's old value: a candidate whose k old bits
-- were all 1 was already seen (dropped); the others are now added, so two workers that
-- produce the same new attribute at the same moment forward it once.
-- Returns {"reload"} when the filter was replaced since the offsets were computed,
-- else {flags (1 = new), total_candidates, filtered_candidates, loaded_ms}.
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[1] then
  return {'reload'}
end
local k = tonumber(ARGV[2])
local offsets = #ARGV - 2
local candidates = offsets / k
local old = {}
local chunk = 400
local i = 3
while i <= #ARGV do
  local args = {}
  local last = math.min(#ARGV, i + chunk - 1)
  for j = i, last do
    args[#args + 1] = 'SET'
    args[#args + 1] = 'u1'
    args[#args + 1] = ARGV[j]
    args[#args + 1] = 1
  end
  local values = redis.call('BITFIELD', KEYS[1], unpack(args))
  for _, v in ipairs(values) do old[#old + 1] = v end
  i = last + 1
end
local flags = {}
local filtered = 0
for c = 0, candidates - 1 do
  local seen = 1
  for h = 1, k do
    if old[c * k + h] == 0 then seen = 0 break end
  end
  if seen == 1 then filtered = filtered + 1 end
  flags[#flags + 1] = 1 - seen
end
local total = redis.call('HINCRBY', KEYS[2], 'total_candidates', candidates)
local dropped = redis.call('HINCRBY', KEYS[2], 'filtered_candidates', filtered)
redis.call('HINCRBY', KEYS[2], 'items', candidates - filtered)
return {flags, total, dropped, redis.call('HGET', KEYS[2], 'loaded_ms') or '0'}
