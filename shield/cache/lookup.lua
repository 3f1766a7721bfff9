-- Look a batch of entries up; refresh the LRU score of every hit; drop stale index members.
--
-- KEYS[1] lru     zset   digest -> last access (server TIME, microseconds)
-- KEYS[2] exp     zset   digest -> expiry (insertion + TTL, microseconds)
-- KEYS[3] values  hash   digest -> value
-- KEYS[4] stats   hash   hits, misses, expired, ...
-- ARGV[1] '1' to count the lookups in stats, '0' not to (a second lookup of texts a producer already looked up)
-- ARGV[2..] the requested digests (raw 32-byte sha256), one per entry
--
-- Returns one reply per digest: the value, or nil on a miss. An entry is live while expiry > now.
-- A member that is expired, or whose value is gone, is removed from both indexes and the values hash.
local lru, exp, values, stats = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%d', now)

local count = ARGV[1] == '1'
local digests = {unpack(ARGV, 2)}
local found = redis.call('HMGET', values, unpack(digests))
local expiry = redis.call('ZMSCORE', exp, unpack(digests))
local out, touch, stale = {}, {}, {}
local hits = 0
for i, digest in ipairs(digests) do
  local at = expiry[i] and tonumber(expiry[i])
  if found[i] and at and at > now then
    out[i] = found[i]
    hits = hits + 1
    touch[#touch + 1] = stamp
    touch[#touch + 1] = digest
  else
    out[i] = false
    if found[i] or at then
      stale[#stale + 1] = digest
    end
  end
end

if #touch > 0 then
  redis.call('ZADD', lru, 'XX', unpack(touch))
end
local expired = 0
if #stale > 0 then
  expired = redis.call('ZREM', lru, unpack(stale))
  redis.call('ZREM', exp, unpack(stale))
  redis.call('HDEL', values, unpack(stale))
end

if count and hits > 0 then redis.call('HINCRBY', stats, 'hits', hits) end
if count and #digests > hits then redis.call('HINCRBY', stats, 'misses', #digests - hits) end
if expired > 0 then redis.call('HINCRBY', stats, 'expired', expired) end
return out
