//! SRV ordering (RFC 2782): ascending priority; within a priority, weighted random order.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// An SRV record reduced to what ordering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// Most SRV records used per name (hostile zones).
pub const MAX_SRV: usize = 16;

/// Orders `records` per RFC 2782. `rand(n)` must return a uniform value in `0..=n`; tests pass a
/// seeded generator, [`Rng`] is the default. Targets of "." (service decidedly not available)
/// are dropped.
pub fn order_srv(mut records: Vec<SrvRecord>, rand: &mut impl FnMut(u32) -> u32) -> Vec<SrvRecord> {
    records.retain(|r| !r.target.is_empty() && r.target != ".");
    // Sort before capping so a flood of low-priority records cannot push out the best ones.
    records.sort_by_key(|r| r.priority);
    records.truncate(MAX_SRV);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|r| r.priority == first.priority).count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        // Zero-weight records first, so they are picked only when the draw is 0 (RFC 2782).
        let mut pool: Vec<&SrvRecord> = group.iter().filter(|r| r.weight == 0).collect();
        pool.extend(group.iter().filter(|r| r.weight != 0));
        while !pool.is_empty() {
            let total: u32 = pool.iter().map(|r| u32::from(r.weight)).sum();
            let draw = rand(total).min(total);
            let mut running = 0u32;
            let idx = pool
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= draw
                })
                .unwrap_or(0);
            out.push(pool.remove(idx).clone());
        }
    }
    out
}

/// Small non-cryptographic generator for weight draws (xorshift64*, seeded from std's
/// per-process random SipHash keys): load spreading needs no crypto and no extra dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Rng {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Rng(h.finish() | 1)
    }

    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Uniform-enough value in `0..=max`.
    pub(crate) fn upto(&mut self, max: u32) -> u32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((v >> 32) % (u64::from(max) + 1)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn priority_is_strict_and_dot_is_dropped() {
        let mut rng = Rng::seeded(7);
        for _ in 0..50 {
            let out = order_srv(
                vec![srv(20, 100, "c."), srv(10, 1, "a."), srv(10, 0, "."), srv(15, 5, "b.")],
                &mut |n| rng.upto(n),
            );
            let names: Vec<_> = out.iter().map(|r| r.target.as_str()).collect();
            assert_eq!(names, ["a.", "b.", "c."]);
        }
    }

    #[test]
    fn weights_bias_first_pick() {
        let mut rng = Rng::seeded(42);
        let mut first_heavy = 0;
        let runs = 4000;
        for _ in 0..runs {
            let out = order_srv(vec![srv(10, 10, "light."), srv(10, 90, "heavy.")], &mut |n| rng.upto(n));
            assert_eq!(out.len(), 2);
            if out[0].target == "heavy." {
                first_heavy += 1;
            }
        }
        // Expected 90 %; allow a wide margin so the test is not flaky.
        let share = f64::from(first_heavy) / f64::from(runs);
        assert!((0.85..0.95).contains(&share), "heavy first in {share}");
    }

    #[test]
    fn cap_keeps_best_priorities() {
        let mut rng = Rng::seeded(9);
        let mut recs: Vec<_> = (0..40).map(|i| srv(50, 1, &format!("h{i}."))).collect();
        recs.push(srv(1, 1, "best."));
        let out = order_srv(recs, &mut |n| rng.upto(n));
        assert_eq!(out.len(), MAX_SRV);
        assert_eq!(out[0].target, "best.");
    }

    #[test]
    fn zero_weight_only_group_keeps_all() {
        let mut rng = Rng::seeded(3);
        let out = order_srv(vec![srv(1, 0, "a."), srv(1, 0, "b.")], &mut |n| rng.upto(n));
        assert_eq!(out.len(), 2);
    }
}
