-- FluxGate lazy sync: one agent reconciles its local share of a global
-- token bucket. The hash holds the bucket (t = tokens, may be negative:
-- a debt of tokens agents took before they learnt the bucket was empty;
-- l = last refill in microseconds of Redis time) and, per agent id, the
-- net tokens it has taken in all (c:ID), when it last synced (s:ID), the
-- share it was granted then (g:ID) and the epoch of its local share (e:ID).
--
-- The agent sends its running total, not a delta: the script charges
-- the difference from the total it stored, so a sync whose reply was
-- lost is never charged twice. When the agent's fields are gone (the
-- agent was idle, or the key expired) the total Redis last acknowledged
-- to the agent (ack) is the base. So is it when the epoch differs: the
-- agent dropped its idle local share (whose takes were all acknowledged)
-- and counts a new one from 0, which must not read as tokens given back.
--
-- KEYS[1] the bucket
-- ARGV    capacity, fill_amount, interval_us, continuous (0|1), agent id,
--         total taken, acknowledged total, ttl_ms, delay_initial_fill (0|1),
--         active_us (an agent that has not synced for this long is no
--         longer counted), epoch of the local share, period_us (one sync
--         period: the most local refill held back for another agent)
-- returns {this agent's share (string), agents sharing the bucket,
--          tokens left in the bucket (string)}
local key = KEYS[1]
local cap = tonumber(ARGV[1])
local fill = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local continuous = ARGV[4] == '1'
local id = ARGV[5]
local total = tonumber(ARGV[6])
local ack = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local active = tonumber(ARGV[10])
local epoch = ARGV[11]
local period = tonumber(ARGV[12])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local h = redis.call('HMGET', key, 't', 'l', 'c:' .. id, 'e:' .. id)
local tokens, last = tonumber(h[1]), tonumber(h[2])
if tokens == nil or last == nil then
  tokens, last = cap, now
  if ARGV[9] == '1' then tokens = 0 end
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

local base = ack
if h[4] == epoch then base = tonumber(h[3]) or ack end
tokens = tokens - (total - base)
if tokens > cap then tokens = cap end
if tokens < -cap then tokens = -cap end

-- Count the agents that synced recently and forget the others.
local all = redis.call('HGETALL', key)
local agents, others = 1, {}
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, 2) == 's:' then
    local a = string.sub(f, 3)
    if a ~= id then
      if now - tonumber(all[i + 1]) <= active then
        agents = agents + 1
        others[#others + 1] = {a, tonumber(all[i + 1])}
      else
        redis.call('HDEL', key, f, 'c:' .. a, 'g:' .. a, 'e:' .. a)
      end
    end
  end
end
-- Hold back what the other agents may be spending without Redis knowing:
-- the share each was granted at its last sync, and its local refill since
-- (at most one sync period's: an agent that has not synced for longer
-- took less than that since, or it would have synced).
local reserved = 0
for _, o in ipairs(others) do
  local g = tonumber(redis.call('HGET', key, 'g:' .. o[1])) or 0
  local r = 0
  if interval > 0 then r = math.min(now - o[2], period) * fill / interval / agents end
  reserved = reserved + g + r
end
local grant = math.max(0, tokens - reserved) / agents
if grant > cap / agents then grant = cap / agents end

redis.call('HSET', key, 't', tokens, 'l', last, 'c:' .. id, total, 's:' .. id, now, 'g:' .. id, grant, 'e:' .. id, epoch)
redis.call('PEXPIRE', key, ttl)
return {tostring(grant), agents, tostring(tokens)}
