//! The Lua scripts that make each cluster-wide decision one atomic step in Redis (run with EVALSHA; the
//! client loads a script the server does not know yet).
//!
//! Keys (all under `[cluster] key_prefix`):
//! * `agent:<agent id>`: a hash, one field per node incarnation (`<node id>:<random>`, new at every start)
//!   holding how many calls that node has on the agent;
//! * `live:<incarnation>`: set by the node's heartbeat with a time to live (`lease_ttl_ms`). A field whose
//!   node has no `live` key any more is a crashed node's: it is deleted the next time the agent is asked
//!   for, so those calls stop counting;
//! * `pace:<trunk>`: when the trunk's next call may go (Redis clock, microseconds), as the per-node
//!   [`crate::call::pacing::Pacer`] keeps it.
//!
//! Scripts read `live:` keys they were not given in KEYS: fine on one Redis server (or a replicated pair),
//! not on Redis Cluster, which this does not support.

use redis::Script;

/// `KEYS[1]` the agent's hash; `ARGV`: this node's field, its count with the new call, the agent's limit,
/// the `live:` key prefix, the hash's time to live (ms). 1: granted (the field now holds the count); 0: the
/// other live nodes' calls plus this node's would pass the limit.
const ACQUIRE: &str = r"
local me = ARGV[1]
local mine = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local others = 0
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  local f = h[i]
  if f ~= me then
    if redis.call('EXISTS', ARGV[4] .. f) == 1 then
      others = others + tonumber(h[i + 1])
    else
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
if others + mine > limit then
  return 0
end
redis.call('HSET', KEYS[1], me, mine)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

/// `KEYS[1]` the trunk's line; `ARGV`: the interval between calls and the longest wait (microseconds).
/// `{1, wait}`: the call goes after `wait`; `{0, wait}`: refused, the line being that long. The clock is
/// Redis's, the same for every node.
const PACE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
if free < now then
  free = now
end
local wait = free - now
if wait > max_wait then
  return {0, wait}
end
redis.call('SET', KEYS[1], string.format('%.0f', free + interval), 'PX', math.floor((wait + interval) / 1000) + 1000)
return {1, wait}
";

/// The scripts, hashed once.
pub struct Scripts {
    pub acquire: Script,
    pub pace: Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            acquire: Script::new(ACQUIRE),
            pace: Script::new(PACE),
        }
    }
}
