-- Record one call's outcome: statistics, health (the seed's rules), bounded history.
-- KEYS[1] health hash, KEYS[2] stats hash, KEYS[3] history list
-- ARGV: success (1/0), now_ms, response_ms, prompt_tokens, completion_tokens, candidates,
--       unique, unhealthy_after, cooldown_until_ms (0 = none), error, history JSON ("" = none),
--       history size, counts_as_request (1/0: health checks are not requests),
--       alpha of the moving averages of success and novelty (unique / candidates),
--       rate limited (1/0: a 429 is no sign of ill health: it sets the cooldown and makes
--       the provider degraded, but does not count towards unhealthy)
-- Health rules (same as producer_tasks.health, cross-checked by tests): a success resets
-- failures and makes the provider healthy; N consecutive failures make it unhealthy,
-- fewer degraded; the average response time is over successful calls.
local success, now = ARGV[1] == '1', ARGV[2]
local request = ARGV[13] == '1'
if request then
  redis.call('HINCRBY', KEYS[2], 'total_requests', 1)
  redis.call('HSET', KEYS[2], 'last_used_ms', now)
end
if success then
  if request then
    redis.call('HINCRBY', KEYS[2], 'successful_requests', 1)
    redis.call('HINCRBYFLOAT', KEYS[2], 'total_response_ms', ARGV[3])
    redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[4])
    redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[5])
    redis.call('HINCRBY', KEYS[2], 'candidates', ARGV[6])
    redis.call('HINCRBY', KEYS[2], 'unique_contributions', ARGV[7])
    redis.call('HINCRBY', KEYS[1], 'successes', 1)
    redis.call('HINCRBYFLOAT', KEYS[1], 'total_response_ms', ARGV[3])
    -- latency histogram (non-cumulative buckets; producer_tasks.metrics adds them up)
    local ms = tonumber(ARGV[3])
    local bucket = 'inf'
    for _, le in ipairs({100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}) do
      if ms <= le then bucket = tostring(le) break end
    end
    redis.call('HINCRBY', KEYS[2], 'latency_le_' .. bucket, 1)
  end
  redis.call('HSET', KEYS[1], 'consecutive_failures', 0, 'last_success_ms', now,
             'status', 'healthy', 'last_error', '')
elseif ARGV[15] == '1' then
  if request then redis.call('HINCRBY', KEYS[2], 'failed_requests', 1) end
  if redis.call('HGET', KEYS[1], 'status') ~= 'unhealthy' then
    redis.call('HSET', KEYS[1], 'status', 'degraded')
  end
  redis.call('HSET', KEYS[1], 'last_failure_ms', now, 'last_error', ARGV[10])
else
  if request then redis.call('HINCRBY', KEYS[2], 'failed_requests', 1) end
  local failures = redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1)
  local status = 'degraded'
  if failures >= tonumber(ARGV[8]) then status = 'unhealthy' end
  redis.call('HSET', KEYS[1], 'last_failure_ms', now, 'status', status, 'last_error', ARGV[10])
end
if not success then
  local cooldown = tonumber(ARGV[9])
  if cooldown > 0 then
    local previous = tonumber(redis.call('HGET', KEYS[1], 'cooldown_until_ms') or '0')
    if cooldown > previous then redis.call('HSET', KEYS[1], 'cooldown_until_ms', cooldown) end
  end
end
if request then
  local alpha = tonumber(ARGV[14])
  local s = tonumber(redis.call('HGET', KEYS[2], 'ema_success') or '1')
  local ok = 0
  if success then ok = 1 end
  redis.call('HSET', KEYS[2], 'ema_success', s * (1 - alpha) + alpha * ok)
  if success and tonumber(ARGV[6]) > 0 then
    local n = tonumber(redis.call('HGET', KEYS[2], 'ema_novelty') or '1')
    redis.call('HSET', KEYS[2], 'ema_novelty', n * (1 - alpha) + alpha * tonumber(ARGV[7]) / tonumber(ARGV[6]))
  end
end
if ARGV[11] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[11])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[12]) - 1)
end
return redis.call('HGET', KEYS[1], 'status')
