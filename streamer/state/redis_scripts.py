"""The Lua scripts behind ``RedisBackend``: each check-and-update runs atomically inside Redis.

Every script reads the clock with ``TIME`` (so all instances share Redis's clock) and touches only the
keys passed in ``KEYS`` (so they would run on a cluster). Times are whole milliseconds: integer-valued
doubles that Lua and Redis both hold exactly.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "ACTIVE",
    "AUDIO_USED",
    "CHARGE",
    "CLAIM_STATE",
    "DROP_STATE",
    "REFRESH",
    "REVOKE",
    "SAVE_STATE",
]

# Shared prelude: server time in whole milliseconds (an integer-valued double, exact in Lua).
NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Drop expired slots, admit if below the limit (limit < 0: unlimited; a held session re-acquires), and
# keep the ZSET alive as long as its newest slot. Returns {allowed, held, ms until oldest slot expires}.
ACQUIRE = (
    NOW_MS
    + """
local key, sid, limit, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local held = redis.call('ZSCORE', key, sid)
local count = redis.call('ZCARD', key)
local allowed = 0
if held or limit < 0 or count < limit then
  redis.call('ZADD', key, now + ttl, sid)
  if not held then count = count + 1 end
  allowed = 1
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, math.max(1, tonumber(newest[2]) - now))
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset = 0
if oldest[2] then reset = tonumber(oldest[2]) - now end
return {allowed, count, reset}
"""
)

# Extend a live slot (an expired one stays gone, as if it had been swept already).
REFRESH = (
    NOW_MS
    + """
local key, sid, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, sid) then return 0 end
redis.call('ZADD', key, 'XX', now + ttl, sid)
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', key, math.max(1, tonumber(newest[2]) - now))
return 1
"""
)

ACTIVE = (
    NOW_MS
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', now), '+inf')
"""
)

# Today's usage lives in {day, used}; a new UTC day starts from zero. Charges only if within the limit
# (limit < 0: unlimited). The hash outlives its day by an hour. Returns {allowed, used, ms to midnight}.
AUDIO_DAY = """
local secs = tonumber(t[1])
local day = math.floor(secs / 86400)
local reset = (day + 1) * 86400000 - now
local key = KEYS[1]
local used = '0'
if tonumber(redis.call('HGET', key, 'day')) == day then used = redis.call('HGET', key, 'used') or '0' end
"""
CHARGE = (
    NOW_MS
    + AUDIO_DAY
    + """
local charge, limit, eps = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if limit >= 0 and tonumber(used) + charge > limit + eps then return {0, used, reset} end
if tonumber(redis.call('HGET', key, 'day')) ~= day then
  redis.call('HSET', key, 'day', string.format('%d', day), 'used', '0')
end
used = redis.call('HINCRBYFLOAT', key, 'used', ARGV[1])
redis.call('EXPIRE', key, (day + 1) * 86400 - secs + 3600)
return {1, used, reset}
"""
)
AUDIO_USED = NOW_MS + AUDIO_DAY + "\nreturn used\n"

REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
return 1
"""

# A session's durable state: KEYS = {hash {state, owner}, list of messages}. Written only by its owner, or
# created when missing; ARGV = {owner, state, ttl ms, keep, release (1: park, owner ""), messages...}.
SAVE_STATE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
local new_owner = ARGV[1]
if ARGV[5] == '1' then new_owner = '' end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'owner', new_owner)
if #ARGV >= 6 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 6))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
"""

# Take a session: KEYS = {hash, list, heartbeat key of the owner the caller read}; ARGV = {claimer, the
# owner the caller read, ttl ms}. The owner is read first (outside) so that every key is passed in KEYS;
# if it changed meanwhile the caller reads again ('retry'). Returns {outcome, state, messages...}.
CLAIM_STATE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return {'missing'} end
if owner ~= ARGV[2] then return {'retry'} end
if owner ~= '' and owner ~= ARGV[1] and redis.call('EXISTS', KEYS[3]) == 1 then return {'busy'} end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
local out = {'claimed', redis.call('HGET', KEYS[1], 'state')}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do out[#out + 1] = m end
return out
"""

# Forget an ended session unless another instance holds it now. KEYS = {hash, list}; ARGV = {owner}.
DROP_STATE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' and owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""
