//! Engine shards (issue 18, part 5): `runtime.engine_shards` engine tasks, each the only owner of the
//! transactions and calls whose SIP Call-ID hashes to it, so that the edge uses more than one core while
//! every call's state still has a single owner and needs no lock.
//!
//! * Which shard owns a message: [`ShardMap::of`] over its Call-ID, found on the raw bytes by
//!   [`sip_core::scan::call_id`] (no parse). Messages without one go to shard 0, which answers 400.
//! * Ids the edge mints itself hash back to the shard that minted them ([`ShardIds::mint`]): the Call-ID
//!   of an agent or trunk leg (so the far end's answers and in-dialog requests come back to the call's
//!   shard) and a call's public id (so `DELETE /v1/calls/{id}` and media events find the call).
//! * What must be counted once for the whole edge (agent concurrency, trunk pacing, admission buckets,
//!   the digest guard) lives in [`limits`], shared by every shard.
//!
//! With one shard none of this costs anything: no scan, no hop, the same path as before shards.

pub mod dispatch;
pub mod limits;

use std::hash::BuildHasher;

pub use dispatch::Dispatch;

/// The most engine shards `runtime.engine_shards` may ask for: far beyond the cores of one box, and small
/// enough that minting an id for a shard (1 try in N) stays cheap.
pub const MAX_SHARDS: usize = 64;

/// Tries [`ShardIds::mint`] makes at most; at [`MAX_SHARDS`] the chance that all of them miss is
/// (63/64)^4096, about 1e-28.
const MINT_TRIES: usize = 4096;

/// Maps a key (a Call-ID, a public call id) to the shard that owns it. The hash is keyed per process
/// (SipHash with a random key) so that no caller can choose Call-IDs that all land on one shard.
#[derive(Clone, Debug)]
pub struct ShardMap {
    count: usize,
    hasher: std::hash::RandomState,
}

impl ShardMap {
    /// `count` shards (at least one).
    pub fn new(count: usize) -> Self {
        ShardMap {
            count: count.max(1),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard owning `key`.
    pub fn of(&self, key: &[u8]) -> usize {
        if self.count == 1 {
            return 0;
        }
        // Multiply-shift instead of `%`: a uniform index without a division.
        let h = self.hasher.hash_one(key);
        ((u128::from(h) * self.count as u128) >> 64) as usize
    }

    /// The shard owning the SIP message in `data`, by its Call-ID; shard 0 when it has none.
    pub fn of_message(&self, data: &[u8]) -> usize {
        if self.count == 1 {
            return 0;
        }
        sip_core::scan::call_id(data).map_or(0, |id| self.of(id))
    }
}

/// One shard's view of the map: who it is, so that the ids it mints come back to it.
#[derive(Clone, Debug)]
pub struct ShardIds {
    map: ShardMap,
    me: usize,
}

impl ShardIds {
    pub fn new(map: ShardMap, me: usize) -> Self {
        ShardIds { map, me }
    }

    /// The only shard of a one-shard edge (and of tests and fuzz targets that build one controller).
    pub fn single() -> Self {
        ShardIds::new(ShardMap::new(1), 0)
    }

    pub fn index(&self) -> usize {
        self.me
    }

    /// A fresh id from `make` that hashes to this shard: made again until it does (on average as many
    /// times as there are shards; bounded by [`MINT_TRIES`], after which the last one is kept and logged).
    pub fn mint(&self, mut make: impl FnMut() -> String) -> String {
        let mut id = make();
        if self.map.count == 1 {
            return id;
        }
        for _ in 1..MINT_TRIES {
            if self.map.of(id.as_bytes()) == self.me {
                return id;
            }
            id = make();
        }
        if self.map.of(id.as_bytes()) != self.me {
            tracing::error!(shard = self.me, %id, "no id hashing to this shard after {MINT_TRIES} tries");
        }
        id
    }
}

/// What one shard's call controller shares with the others, and which shard it is.
#[derive(Clone)]
pub struct CallShard {
    pub ids: ShardIds,
    pub agents: crate::call::AgentSlots,
    pub pacer: crate::call::pacing::TrunkPacer,
}

impl CallShard {
    /// A one-shard edge's (tests and fuzz targets that build a controller alone).
    pub fn single(max_pacing_wait: std::time::Duration) -> Self {
        CallShard {
            ids: ShardIds::single(),
            agents: Default::default(),
            pacer: crate::call::pacing::TrunkPacer::new(max_pacing_wait),
        }
    }
}

/// `runtime.engine_shards` when the config leaves it out: one per core, less one on boxes of 2 to 4
/// cores (a "small box": there the SIP UDP readers' kernel time, the record writer, the media relays and
/// the API need a core's worth between them, and a shard competing with them for it was measured to lose
/// more than it gained); never fewer than one.
pub fn default_shards(cores: usize) -> usize {
    match cores {
        0 | 1 => 1,
        2..=4 => cores - 1,
        n => n.min(MAX_SHARDS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_owns_everything() {
        let m = ShardMap::new(1);
        assert_eq!(m.of(b"anything"), 0);
        assert_eq!(m.of_message(b"garbage"), 0);
        assert_eq!(ShardIds::single().mint(|| "x".into()), "x");
    }

    #[test]
    fn keys_spread_over_shards_and_stay_put() {
        let m = ShardMap::new(4);
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            let key = format!("{i}@carrier.example");
            let s = m.of(key.as_bytes());
            assert_eq!(s, m.of(key.as_bytes()), "stable");
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn minted_ids_hash_to_their_shard() {
        let m = ShardMap::new(3);
        for me in 0..3 {
            let ids = ShardIds::new(m.clone(), me);
            for _ in 0..50 {
                let id = ids.mint(sip_core::build::new_token);
                assert_eq!(m.of(id.as_bytes()), me);
            }
        }
    }

    #[test]
    fn messages_go_by_call_id_and_without_one_to_shard_0() {
        let m = ShardMap::new(8);
        let msg = b"BYE sip:a SIP/2.0\r\ni: abc@x\r\n\r\n";
        assert_eq!(m.of_message(msg), m.of(b"abc@x"));
        assert_eq!(m.of_message(b"BYE sip:a SIP/2.0\r\nCSeq: 1 BYE\r\n\r\n"), 0);
    }

    #[test]
    fn default_leaves_a_core_on_small_boxes() {
        assert_eq!(default_shards(1), 1);
        assert_eq!(default_shards(2), 1);
        assert_eq!(default_shards(4), 3);
        assert_eq!(default_shards(16), 16);
        assert_eq!(default_shards(500), MAX_SHARDS);
    }
}
