-- Record one call's outcome: statistics, health (producer_tasks/health.py's rules), bounded history.
-- Health rules (same as producer_tasks.health, cross-checked by tests): a success resets
-- failures and makes the provider healthy; N consecutive failures make it unhealthy,
-- fewer degraded; the average response time is over successful calls. A 429
-- (rate_limited) is no sign of ill health: it sets the cooldown and makes the provider
-- degraded, but does not count towards unhealthy. Health checks are not requests.
-- Idempotent: once_key makes a resent call a no-op (it answers the current status).
local health_key, stats_key, history_key, once_key, spend_key = unpack(KEYS)
local success, now_ms, response_ms, prompt_tokens, completion_tokens, candidates, unique,
      unhealthy_after, cooldown_until_ms, error, history_json, history_size,
      counts_as_request, alpha, rate_limited, once_ttl_ms, cost_usd, cooldown_cap_ms = unpack(ARGV)
if not redis.call('SET', once_key, '1', 'NX', 'PX', once_ttl_ms) then
  return redis.call('HGET', health_key, 'status')
end
success = success == '1'
local now = now_ms
local request = counts_as_request == '1'
if request then
  redis.call('HINCRBY', stats_key, 'total_requests', 1)
  -- latency histograms of every call, successful ('latency_le_') and failed ('failed_latency_le_'),
  -- as non-cumulative buckets (orchestrator_bridge.metrics adds them up)
  local ms = tonumber(response_ms)
  local bucket = 'inf'
  for _, le in ipairs({100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}) do
    if ms <= le then bucket = tostring(le) break end
  end
  if success then
    redis.call('HINCRBY', stats_key, 'latency_le_' .. bucket, 1)
  else
    redis.call('HINCRBY', stats_key, 'failed_latency_le_' .. bucket, 1)
    redis.call('HINCRBYFLOAT', stats_key, 'failed_response_ms', response_ms)
  end
  -- the moving averages of success and novelty, and the last use: one read, one write
  local a = tonumber(alpha)
  local ema = redis.call('HMGET', stats_key, 'ema_success', 'ema_novelty')
  local ok = 0
  if success then ok = 1 end
  local fields = {'last_used_ms', now, 'ema_success', tonumber(ema[1] or '1') * (1 - a) + a * ok}
  if success and tonumber(candidates) > 0 then
    fields[5] = 'ema_novelty'
    fields[6] = tonumber(ema[2] or '1') * (1 - a) + a * tonumber(unique) / tonumber(candidates)
  end
  redis.call('HSET', stats_key, unpack(fields))
end
local status
if success then
  if request then
    redis.call('HINCRBY', stats_key, 'successful_requests', 1)
    redis.call('HINCRBYFLOAT', stats_key, 'total_response_ms', response_ms)
    redis.call('HINCRBY', stats_key, 'prompt_tokens', prompt_tokens)
    redis.call('HINCRBY', stats_key, 'completion_tokens', completion_tokens)
    if tonumber(cost_usd) > 0 then
      redis.call('HINCRBYFLOAT', stats_key, 'cost_usd', cost_usd)
      redis.call('HINCRBYFLOAT', spend_key, 'usd', cost_usd)  -- what PRODUCER_BUDGET_USD caps
    end
    redis.call('HINCRBY', stats_key, 'candidates', candidates)
    redis.call('HINCRBY', stats_key, 'unique_contributions', unique)
    redis.call('HINCRBY', health_key, 'successes', 1)
    redis.call('HINCRBYFLOAT', health_key, 'total_response_ms', response_ms)
  end
  status = 'healthy'
  redis.call('HSET', health_key, 'consecutive_failures', 0, 'last_success_ms', now,
             'status', status, 'last_error', '')
elseif rate_limited == '1' then
  if request then redis.call('HINCRBY', stats_key, 'failed_requests', 1) end
  status = redis.call('HGET', health_key, 'status')
  if status ~= 'unhealthy' then status = 'degraded' end
  redis.call('HSET', health_key, 'last_failure_ms', now, 'status', status, 'last_error', error)
else
  if request then redis.call('HINCRBY', stats_key, 'failed_requests', 1) end
  local failures = redis.call('HINCRBY', health_key, 'consecutive_failures', 1)
  status = 'degraded'
  if failures >= tonumber(unhealthy_after) then status = 'unhealthy' end
  redis.call('HSET', health_key, 'last_failure_ms', now, 'status', status, 'last_error', error)
end
-- a cooldown never ends later than now + cooldown_cap_ms (PRODUCER_MAX_RETRY_AFTER_S), whatever
-- is stored already (a huge Retry-After from an older version, or one edited by hand)
local cap = tonumber(now_ms) + tonumber(cooldown_cap_ms)
local previous = tonumber(redis.call('HGET', health_key, 'cooldown_until_ms') or '0') or 0
if previous > cap then
  previous = cap
  redis.call('HSET', health_key, 'cooldown_until_ms', cap)
end
if not success then
  local cooldown = math.min(tonumber(cooldown_until_ms), cap)
  if cooldown > previous then redis.call('HSET', health_key, 'cooldown_until_ms', cooldown) end
end
if history_json ~= '' then
  redis.call('LPUSH', history_key, history_json)
  redis.call('LTRIM', history_key, 0, tonumber(history_size) - 1)
end
return status
