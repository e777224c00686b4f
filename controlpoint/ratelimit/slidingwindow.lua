-- FluxGate sliding-window counter: one hash holding the index of the
-- current window (w), its count (c) and the previous window's count (p).
-- The estimate for the interval ending now is p * (share of the previous
-- window still inside it) + c. The clock is Redis TIME.
--
-- KEYS[1] the counter
-- ARGV    limit, window_us, cost, mode (t take | p peek | r return), ttl_ms
-- returns {allowed (0|1), remaining (string), wait_us (-1 never), reset_us}
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local mode = ARGV[4]
local ttl = tonumber(ARGV[5])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local idx = math.floor(now / win)

local h = redis.call('HMGET', key, 'w', 'c', 'p')
local w, c, p = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
local stored = w ~= nil
if w == nil or w < idx - 1 then
  c, p = 0, 0
elseif w == idx - 1 then
  p, c = c, 0
elseif w > idx then
  -- Redis time went back (a failover to a node with a slower clock):
  -- keep counting in the stored window.
  idx = w
end
local e = now - idx * win
if e < 0 then e = 0 end
local est = p * (win - e) / win + c

local allowed = 0
local write = mode == 't'
if mode == 'r' then
  if c >= cost then c = c - cost else p = math.max(0, p - (cost - c)); c = 0 end
  allowed = 1
  write = stored
elseif est + cost <= limit then
  allowed = 1
  if mode == 't' then c = c + cost; est = est + cost end
end

local wait = 0
if allowed == 0 then
  if cost > limit then
    wait = -1
  elseif c + cost <= limit then
    -- the previous window's weight must fall far enough
    wait = math.max(0, math.ceil(win * (1 - (limit - c - cost) / p) - e))
  else
    -- in the next window, this window's count becomes the weighted one
    wait = math.max(0, math.ceil((win - e) + win * (1 - (limit - cost) / c)))
  end
end
local reset = 0
if c > 0 then reset = (win - e) + win elseif p > 0 then reset = win - e end
if write then
  redis.call('HSET', key, 'w', idx, 'c', c, 'p', p)
  redis.call('PEXPIRE', key, ttl)
end
return {allowed, tostring(math.max(0, limit - est)), wait, math.ceil(reset)}
