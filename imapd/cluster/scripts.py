"""The Lua run inside Redis, so that each lease decision is one atomic step: two nodes that try to take
one user at the same moment cannot both win, and a node cannot renew a name another process holds.

Keys of other nodes are built from a prefix argument (fine on a single Redis, which is what we support;
Redis Cluster would need hash tags).
"""

from __future__ import annotations

__all__ = ["ASSERT", "FAILURE", "FENCE", "HEARTBEAT", "OWNER_ADDRESS", "RELEASE", "SUCCESS"]

# Renew this node's liveness key and mark when the keyspace was first seen.
# KEYS: node key, since key.  ARGV: epoch, ttl ms, imap address, started, pid, host (optional: the boot id
# and pid namespace of the machine, imapd/cluster/death.py; with it, every renewing process leaves a
# "pid:N" field, so that a peer on the same host can prove the node dead before its TTL runs out), lmtp
# (optional: HOST:PORT of its LMTP listener, where other nodes forward deliveries for its users).
# renew() returns 1 (renewed), 0 (the key had lapsed: re-created), -1 (another process holds this node
# id); HEARTBEAT returns {that, the node's "draining" field} (set by an operator's drain: "1").
_RENEW = """
local function renew(node_key, since_key, epoch, ttl, imap, started, pid, host, lmtp)
  local held = redis.call('HGET', node_key, 'epoch')
  if held and held ~= epoch then return -1 end
  redis.call('HSET', node_key, 'epoch', epoch, 'imap', imap, 'started', started, 'pid', pid)
  if host and host ~= '' then redis.call('HSET', node_key, 'host', host, 'pid:' .. pid, '1') end
  if lmtp and lmtp ~= '' then redis.call('HSET', node_key, 'lmtp', lmtp) end
  redis.call('PEXPIRE', node_key, ttl)
  if redis.call('EXISTS', since_key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', since_key, t[1] * 1000 + math.floor(t[2] / 1000))
  end
  if held then return 1 end
  return 0
end
"""

# The "pid:N" fields of a node key, as "N1,N2,..." sorted (what FENCE compares against).
_PIDS = """
local function pids(node_key)
  local out = {}
  for _, field in ipairs(redis.call('HKEYS', node_key)) do
    if string.sub(field, 1, 4) == 'pid:' then out[#out + 1] = string.sub(field, 5) end
  end
  table.sort(out)
  return table.concat(out, ',')
end
"""

HEARTBEAT = _RENEW + """
local renewed = renew(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return {renewed, redis.call('HGET', KEYS[1], 'draining') or ''}
"""

# Renew the node, then claim or confirm one user.
# KEYS: my node key, the user's owner key, since key.
# ARGV: node id, epoch, ttl ms, imap, started, pid, node-key prefix, grace ms, mode, re-assert window ms,
# host, lmtp (optional, as for HEARTBEAT).
# mode "claim": take the user if unowned or its owner is dead, once the re-assert grace has passed;
# mode "confirm": the user was ours; keep it if the record says so, or if the record is missing because
# Redis lost its keys not longer ago than the re-assert window (a restart); never take it from another
# node, even a dead one, nor back after someone released it (others wrote meanwhile).
# A draining node takes no user it does not hold.
# Returns {status, other node, lapsed}: status "ok", "taken", "wait", "draining" or "conflict". A claim
# that finds the user held by a live node also gets that node's evidence: {"taken", other, lapsed, its
# host, its epoch, its pids (sorted, comma-separated)}, for the death check of imapd/cluster/death.py.
ASSERT = _RENEW + _PIDS + """
local lapsed = renew(KEYS[1], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[11], ARGV[12])
if lapsed == -1 then return {'conflict', '', 0} end
local owner = redis.call('GET', KEYS[2])
if owner == ARGV[1] then return {'ok', '', lapsed} end
if ARGV[9] == 'claim' and redis.call('HGET', KEYS[1], 'draining') == '1' then
  return {'draining', owner or '', lapsed}
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local since = tonumber(redis.call('GET', KEYS[3]) or now)
if ARGV[9] == 'confirm' then
  if owner or now - since >= tonumber(ARGV[10]) then return {'taken', owner or '', lapsed} end
  redis.call('SET', KEYS[2], ARGV[1])
  return {'ok', '', lapsed}
end
if owner and redis.call('EXISTS', ARGV[7] .. owner) == 1 then
  local okey = ARGV[7] .. owner
  return {'taken', owner, lapsed, redis.call('HGET', okey, 'host') or '', redis.call('HGET', okey, 'epoch') or '',
          pids(okey)}
end
if now - since < tonumber(ARGV[8]) then return {'wait', owner or '', lapsed} end
redis.call('SET', KEYS[2], ARGV[1])
return {'ok', owner or '', lapsed}
"""

# End a dead node's liveness key before its TTL does, once a peer on its host proved every one of its
# processes gone (imapd/cluster/death.py): only if the key still names the epoch and exactly the pids that
# were checked (a process that registered since, e.g. a worker respawned by a live supervisor, was not).
# KEYS: the dead node's key.  ARGV: epoch, pids (as the ASSERT reply gave them).  Returns 1 if ended.
FENCE = _PIDS + """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
if pids(KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# One address of a user's live owner, in one round trip (the proxy: 'imap'; a delivery to forward: 'lmtp').
# KEYS: the user's owner key.  ARGV: the node-key prefix, the node hash's field.  {node, address} or {}
# (no owner, or its node key expired).
OWNER_ADDRESS = """
local node = redis.call('GET', KEYS[1])
if not node then return {} end
local address = redis.call('HGET', ARGV[1] .. node, ARGV[2])
if not address then return {} end
return {node, address}
"""

# KEYS: owner key.  ARGV: node id.  Deletes the record only if it is ours.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# One failed login. KEYS: address, user, pair counters (user and pair "" when no user was named).
# ARGV: window ms, "1" if a user was named, max address failures, max user failures, throttle channel,
# node id, address, user.  A counter that reaches its limit is announced on the throttle channel once
# (nodes then refuse from memory, without asking Redis at each login).  Returns {address count, user count}.
FAILURE = """
local function count(key, ttl)
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ttl) end
  return n
end
local function announce(kind, key, counter)
  redis.call('PUBLISH', ARGV[5], cjson.encode({node = ARGV[6], kind = kind, key = key,
                                                ttl = redis.call('PTTL', counter)}))
end
local a = count(KEYS[1], ARGV[1])
if a == tonumber(ARGV[3]) then announce('address', ARGV[7], KEYS[1]) end
local u = 0
if ARGV[2] == '1' then
  u = count(KEYS[2], ARGV[1])
  count(KEYS[3], ARGV[1])
  if u == tonumber(ARGV[4]) then announce('user', ARGV[8], KEYS[2]) end
end
return {a, u}
"""

# A successful login forgets that user's failures from that address only (as AuthThrottle does), and
# tells the nodes the remaining counts (they lift a throttle that fell below its limit).
# KEYS: address, user, pair counters.  ARGV: throttle channel, node id, address, user.
SUCCESS = """
local n = tonumber(redis.call('GET', KEYS[3]) or '0')
if n == 0 then return 0 end
local left = {}
for i, key in ipairs({KEYS[1], KEYS[2]}) do
  left[i] = redis.call('DECRBY', key, n)
  if left[i] <= 0 then redis.call('DEL', key) left[i] = 0 end
end
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[1], cjson.encode({node = ARGV[2], kind = 'clear', address = ARGV[3],
                                            user = ARGV[4], address_count = left[1], user_count = left[2]}))
return n
"""
