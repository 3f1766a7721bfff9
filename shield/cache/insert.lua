-- Insert (or overwrite) a batch of entries, keeping the entry count at or under the bound.
--
-- KEYS[1] lru     zset   digest -> last access (server TIME, microseconds)
-- KEYS[2] exp     zset   digest -> expiry (insertion + TTL, microseconds)
-- KEYS[3] values  hash   digest -> value
-- KEYS[4] stats   hash   inserts, updates, evictions, expired, ...
-- ARGV[1] TTL in microseconds        ARGV[2] max entries
-- ARGV[3] purge budget (members)     ARGV[4] eviction budget beyond the batch size
-- ARGV[5..] digest, value, digest, value, ...
--
-- Steps, all bounded by the batch size n plus a constant:
--   1. purge at most ARGV[3] TTL-expired members (expiry <= now) from both indexes and the values hash;
--   2. write the batch: value, last access = now, expiry = now + TTL;
--   3. evict least recently used members while over the bound, at most n + ARGV[4] of them;
--   4. set the keys to expire just after their last entry, so an abandoned cache removes itself.
-- Returns {new entries, evicted, purged}.
local lru, exp, values, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl = tonumber(ARGV[1])
local max_entries = tonumber(ARGV[2])
local purge_budget = tonumber(ARGV[3])
local evict_extra = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function int(x) return string.format('%d', x) end

-- 1. purge expired members
local old = redis.call('ZRANGEBYSCORE', exp, '-inf', int(now), 'LIMIT', 0, int(purge_budget))
if #old > 0 then
  redis.call('ZREM', lru, unpack(old))
  redis.call('ZREM', exp, unpack(old))
  redis.call('HDEL', values, unpack(old))
  redis.call('HINCRBY', stats, 'expired', #old)
end

-- 2. write the batch
local n = 0
local touch, expiry, fields = {}, {}, {}
local stamp, expires = int(now), int(now + ttl)
for i = 5, #ARGV, 2 do
  n = n + 1
  touch[#touch + 1] = stamp
  touch[#touch + 1] = ARGV[i]
  expiry[#expiry + 1] = expires
  expiry[#expiry + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
local added = redis.call('ZADD', lru, unpack(touch))
redis.call('ZADD', exp, unpack(expiry))
redis.call('HSET', values, unpack(fields))

-- 3. evict the least recently used members while over the bound
local evicted = 0
local excess = redis.call('ZCARD', lru) - max_entries
if excess > 0 then
  local popped = redis.call('ZPOPMIN', lru, int(math.min(excess, n + evict_extra)))
  local victims = {}
  for j = 1, #popped, 2 do
    victims[#victims + 1] = popped[j]
  end
  redis.call('ZREM', exp, unpack(victims))
  redis.call('HDEL', values, unpack(victims))
  evicted = #victims
end

if added > 0 then redis.call('HINCRBY', stats, 'inserts', added) end
if n > added then redis.call('HINCRBY', stats, 'updates', n - added) end
if evicted > 0 then redis.call('HINCRBY', stats, 'evictions', evicted) end

-- 4. the keys outlive their last entry by one millisecond
local last = redis.call('ZRANGE', exp, -1, -1, 'WITHSCORES')
if last[2] then
  local at = int(math.floor(tonumber(last[2]) / 1000) + 1)
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIREAT', key, at)
  end
end

return {added, evicted, #old}
