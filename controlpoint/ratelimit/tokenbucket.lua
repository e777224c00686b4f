-- FluxGate token bucket: one bucket in one hash (t = tokens, l = last
-- refill in microseconds of Redis time). The clock is Redis TIME, so the
-- agents' clocks never matter.
--
-- KEYS[1] the bucket
-- ARGV    capacity, fill_amount, interval_us, continuous (0|1), cost,
--         mode (t take | p peek | r return), ttl_ms, delay_initial_fill (0|1)
-- returns {allowed (0|1), tokens left (string), wait_us (-1 never), reset_us}
local key = KEYS[1]
local cap = tonumber(ARGV[1])
local fill = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local continuous = ARGV[4] == '1'
local cost = tonumber(ARGV[5])
local mode = ARGV[6]
local ttl = tonumber(ARGV[7])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local h = redis.call('HMGET', key, 't', 'l')
local tokens, last = tonumber(h[1]), tonumber(h[2])
local stored = tokens ~= nil and last ~= nil
if not stored then
  tokens, last = cap, now
  if ARGV[8] == '1' then tokens = 0 end
end
local elapsed = now - last
if elapsed > 0 and interval > 0 then
  if continuous then
    tokens = tokens + elapsed * fill / interval
    last = now
  else
    local k = math.floor(elapsed / interval)
    tokens = tokens + k * fill
    last = last + k * interval
  end
end
if tokens > cap then tokens = cap end

local function waitfor(missing)
  if missing <= 0 then return 0 end
  if fill <= 0 or interval <= 0 then return -1 end
  local w
  if continuous then w = math.ceil(missing * interval / fill)
  else w = math.ceil(missing / fill) * interval end
  -- Redis turns a number into an integer reply by a C cast: keep it in range.
  if w ~= w or w > 9e15 then return -1 end
  return w
end

local allowed = 0
local write = mode == 't'
if mode == 'r' then
  tokens = math.min(tokens + cost, cap)
  allowed = 1
  write = stored
elseif tokens >= cost then
  allowed = 1
  if mode == 't' then tokens = tokens - cost end
end
local wait = 0
if allowed == 0 then wait = waitfor(cost - tokens) end
if write then
  redis.call('HSET', key, 't', tokens, 'l', last)
  redis.call('PEXPIRE', key, ttl)
end
return {allowed, tostring(tokens), wait, waitfor(cap - tokens)}
