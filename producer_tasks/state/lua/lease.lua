-- A lease held by one owner at a time (beat's leadership): take it when free, renew it when
-- ours, else leave it; ttl_ms 0 releases it when ours. Returns 1 when the caller holds it now.
local lease_key = unpack(KEYS)
local owner, ttl_ms = unpack(ARGV)
local holder = redis.call('GET', lease_key)
if tonumber(ttl_ms) <= 0 then
  if holder == owner then redis.call('DEL', lease_key) end
  return 0
end
if holder == owner then
  redis.call('PEXPIRE', lease_key, ttl_ms)
  return 1
end
if not holder then
  redis.call('SET', lease_key, owner, 'PX', ttl_ms)
  return 1
end
return 0
