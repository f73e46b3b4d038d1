-- The Redis store's rules: the same rules as yamarket_chats/limits/_local.py
-- (the reference model), one function here per function there, under the
-- same name. tests/test_limits_differential.py drives both with the same
-- random histories and expects the same answers: change a rule in both.
--
-- Lines marked "Redis only" have no counterpart in the model: leases that
-- expire (a dead worker's slots and in-flight entries), key TTLs, PUBLISH of
-- freed slots, a finish sent twice counting once, and a server's count that
-- Redis lost (a restart, a failover, an eviction) restored from the worker's
-- hint.
--
-- Keys, per (business, method), in fours: bucket (hash: level, last, credit),
-- server (hash: remaining, reset_at), slots (zset of the business's leases,
-- by end; its name is also the pub/sub channel), flight (zset of leases of
-- this method in flight, by end). The first four are the take's when ARGV[1]
-- is 'a'; then one four per finish. Every key of a call is of one business,
-- whose id is the keys' hash tag ({...}): one slot of a Redis Cluster.
--
-- ARGV: mode ('a': finishes then a take; 'f': finishes only), now ('' reads
-- Redis TIME; a number only from tests), cap (0: none), lease seconds,
-- WINDOW_TOLERANCE, FORGET_AFTER, the number of finishes; for 'a' the lease
-- id, the bucket's max_rate (0: no bucket) and rate per second (max_rate /
-- time_period, as aiolimiter computes it), and the worker's hint: the
-- server's remaining count as it knows it ('' none) and the seconds until
-- that count's reset; then per finish: lease id, '1' to refund, the server's
-- remaining ('' when the answer had none), seconds until its reset.
--
-- Returns for 'a': 'go' ('go <remaining> <seconds until its reset>' when the
-- server's count is known), 'window <s>', 'bucket <s>' or 'slot <s>'; for
-- 'f' the seconds until the last finish's window resets if it is spent, else 0.

local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local cap = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local WINDOW_TOLERANCE = tonumber(ARGV[5])
local FORGET_AFTER = tonumber(ARGV[6])

local function num(x)
  return string.format('%.17g', x)  -- every double exactly, as the model holds it
end

-- The server's count: remaining (nil when unknown) and the reset.
local function count(server)
  local w = redis.call('HMGET', server, 'remaining', 'reset_at')
  if not w[1] then return nil, 0 end
  return tonumber(w[1]), tonumber(w[2])
end

-- _spent(): seconds until the server's spent window resets (0: not spent).
local function spent(remaining, reset_at)
  if (not remaining) or remaining > 0 or now >= reset_at then return 0 end
  return reset_at - now
end

-- _forget_over(): forget a window that is over (spent and reset, or reset
-- FORGET_AFTER ago). Returns the count that stands (nil: none).
local function forget_over(server, remaining, reset_at)
  if remaining and (now >= reset_at + FORGET_AFTER or (remaining <= 0 and now >= reset_at)) then
    redis.call('DEL', server)
    return nil
  end
  return remaining
end

-- _observe(): take in the server's count from an answer; returns the count
-- and reset that stand.
local function observe(server, flight, known, known_reset, remaining, reset_in)
  -- quota.in_flight (Redis only: leases past their end are not counted)
  local estimate = remaining - redis.call('ZCOUNT', flight, now, '+inf')
  local reset_at = now + reset_in
  if (not known) or reset_at > known_reset + WINDOW_TOLERANCE then  -- a new window
    redis.call('HSET', server, 'remaining', string.format('%d', estimate), 'reset_at', num(reset_at))
    known, known_reset = estimate, reset_at
  elseif reset_at > known_reset - WINDOW_TOLERANCE and estimate < known then
    redis.call('HSET', server, 'remaining', string.format('%d', estimate))
    known = estimate
  end  -- else: a late answer from a window already over; nothing to learn
  -- Redis only: the key lives until the model forgets the window
  redis.call('PEXPIRE', server, math.ceil((known_reset + FORGET_AFTER - now) * 1000))
  return known, known_reset
end

-- The bucket: aiolimiter.AsyncLimiter's arithmetic on (level, last) exactly,
-- and the model's credit (refunds owed: the effective level is
-- max(0, level - credit)).
local function load(bucket)
  local b = redis.call('HMGET', bucket, 'level', 'last', 'credit')
  return {level = tonumber(b[1] or '0'), last = tonumber(b[2] or '0'),
          credit = tonumber(b[3] or '0')}
end

-- AsyncLimiter._leak, which has_capacity() runs first.
local function leak(b, rate)
  if b.level ~= 0 then b.level = math.max(b.level - (now - b.last) * rate, 0) end
  b.last = now
end

-- AsyncLimiter.has_capacity(amount), after the leak.
local function has_capacity(b, max_rate, amount)
  return b.level + amount <= max_rate
end

local function save(bucket, b, rate)
  redis.call('HSET', bucket, 'level', num(b.level), 'last', num(b.last),
             'credit', string.format('%d', b.credit))
  -- Redis only: kept while it holds anything, and a lease longer
  redis.call('PEXPIRE', bucket, math.ceil((b.level / rate + lease) * 1000))
end

-- _spend_credit(), then bucket.acquire(): take one token; has_capacity(1 - credit) has just said there is one.
local function charge(b, max_rate)
  if b.credit == 0 then
    b.level = b.level + 1  -- bucket.acquire()
  elseif has_capacity(b, max_rate, max_rate - b.credit) then
    b.level, b.last, b.credit = 1, now, 0  -- a fresh AsyncLimiter, then acquire()
  else
    b.credit = b.credit - 1
  end
end

-- _bucket_wait(): seconds until has_capacity(1 - credit). The model finds the
-- level by bisection; here it is read, so the two agree to ~1e-15 s, not bits.
local function bucket_wait(b, max_rate, rate)
  return (b.level - b.credit + 1 - max_rate) / rate
end

-- Redis only: a count Redis no longer holds while the worker knows one of a
-- window still running (it sends none other) was lost with Redis's state:
-- the worker's knowledge stands in for it, rather than a count started afresh.
local function restore(server, hint, hint_reset)
  if hint == '' then return nil, 0 end
  local reset_at = now + tonumber(hint_reset)
  redis.call('HSET', server, 'remaining', hint, 'reset_at', num(reset_at))
  redis.call('PEXPIRE', server, math.ceil((reset_at + FORGET_AFTER - now) * 1000))
  return tonumber(hint), reset_at
end

-- LocalStore.take(): window, bucket, slot; all three or none.
local function take(bucket, server, slots, flight, id, max_rate, rate, hint, hint_reset)
  local remaining, reset_at = count(server)
  if not remaining then remaining, reset_at = restore(server, hint, hint_reset) end
  if remaining and remaining <= 0 then
    local seconds = spent(remaining, reset_at)
    if seconds ~= 0 then return 'window ' .. num(seconds) end
    redis.call('DEL', server)  -- the window is over: the server counts afresh
    remaining = nil
  end
  local b
  if max_rate > 0 then
    b = load(bucket)
    leak(b, rate)
    if not has_capacity(b, max_rate, 1 - b.credit) then
      save(bucket, b, rate)  -- the leak stays, as in AsyncLimiter
      return 'bucket ' .. num(bucket_wait(b, max_rate, rate))
    end
  end
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)  -- Redis only: dead leases end
    if redis.call('ZCARD', slots) >= cap then
      if b then save(bucket, b, rate) end
      local first = redis.call('ZRANGE', slots, 0, 0, 'WITHSCORES')
      return 'slot ' .. num(tonumber(first[2]) - now)  -- Redis only: when one ends
    end
  end
  if b then
    charge(b, max_rate)
    save(bucket, b, rate)
  end
  if remaining then remaining = redis.call('HINCRBY', server, 'remaining', -1) end
  -- quota.in_flight += 1 (Redis only: as a lease that ends)
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', now)
  redis.call('ZADD', flight, now + lease, id)
  redis.call('PEXPIRE', flight, math.ceil(lease * 1000))
  if cap > 0 then  -- business.held += 1
    redis.call('ZADD', slots, now + lease, id)
    redis.call('PEXPIRE', slots, math.ceil(lease * 1000))
  end
  -- Redis only: the count that stands, which the worker keeps as its hint
  if remaining then return 'go ' .. string.format('%d', remaining) .. ' ' .. num(reset_at - now) end
  return 'go'
end

local freed = {}

-- LocalStore.finish(); returns the seconds until a spent window resets.
local function finish(bucket, server, slots, flight, id, refund, count_now, reset_in)
  -- quota.in_flight -= 1 (Redis only: a finish sent twice changes nothing more)
  local live = redis.call('ZREM', flight, id) == 1
  local remaining, reset_at = count(server)
  remaining = forget_over(server, remaining, reset_at)
  if live and refund == '1' then  -- _refund()
    if remaining then
      remaining = remaining + 1
      redis.call('HINCRBY', server, 'remaining', 1)
    end
    -- the model's `bucket is not None`; a bucket gone with its TTL owes nothing
    if redis.call('EXISTS', bucket) == 1 then
      redis.call('HINCRBY', bucket, 'credit', 1)
    end
  end
  if count_now ~= '' then
    remaining, reset_at = observe(server, flight, remaining, reset_at, tonumber(count_now),
                                  tonumber(reset_in))
  end
  -- business.held -= 1
  if cap > 0 and redis.call('ZREM', slots, id) == 1
     and redis.call('ZCARD', slots) == cap - 1 then
    freed[slots] = true  -- Redis only: announced below
  end
  return spent(remaining, reset_at)
end

local k, a = 0, 7
if ARGV[1] == 'a' then k, a = 4, 12 end
local answer = 0
for _ = 1, tonumber(ARGV[7]) do
  answer = finish(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4],
                  ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  k, a = k + 4, a + 4
end
if ARGV[1] == 'a' then
  answer = take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10]),
                ARGV[11], ARGV[12])
else
  answer = num(answer)
end
-- Redis only: tell waiting workers (pub/sub on the slots key's name) a slot is free
for channel in pairs(freed) do
  if redis.call('ZCARD', channel) < cap then redis.call('PUBLISH', channel, '1') end
end
return answer
