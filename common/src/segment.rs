//! Execution segments: which global iteration and VU numbers a share of the load owns.
//!
//! The load is split by integer weights into a repeating cycle (length = sum of
//! weights) laid out by smooth weighted round-robin, so every share's numbers are
//! evenly interleaved and the shares partition the whole exactly: no number twice,
//! none missing. A [`Stripe`] can be split again (an agent's share among its worker
//! threads) and the result still partitions the parent. This mirrors k6's execution
//! segments: VU counts, iterations and arrival times all come from the same
//! numbering, so the union of all shares is the single-machine schedule.

use serde::{Deserialize, Serialize};

/// Largest cycle a split may have: weights are scaled down to stay below it.
pub const MAX_CYCLE: u64 = 10_000;

/// A weight list that cannot make a split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// No weights, or all of them zero.
    #[error("cannot split the load: the weights {0:?} have no positive entry")]
    NoWeight(Vec<u64>),
    /// A level's positions are not a valid subset of its cycle.
    #[error("invalid segment level: cycle {cycle}, positions {positions:?}")]
    InvalidLevel {
        /// The cycle length.
        cycle: u64,
        /// The positions given.
        positions: Vec<u64>,
    },
}

/// One split: of every `cycle` consecutive numbers, this share owns `positions` (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// Length of the repeating pattern.
    pub cycle: u64,
    /// Owned offsets within the pattern, strictly increasing, each `< cycle`.
    pub positions: Vec<u64>,
}

impl Level {
    fn count_below(&self, n: u64) -> u64 {
        let len = self.positions.len() as u64;
        let rem = n % self.cycle;
        (n / self.cycle) * len + self.positions.iter().take_while(|&&p| p < rem).count() as u64
    }

    fn map(&self, local: u64) -> u64 {
        let len = self.positions.len() as u64;
        (local / len) * self.cycle + self.positions[(local % len) as usize]
    }
}

/// A share of the load, possibly split several times (outermost split first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stripe {
    levels: Vec<Level>,
}

impl Stripe {
    /// The whole load (segment 0:1).
    pub fn full() -> Self {
        Stripe { levels: Vec::new() }
    }

    /// A share that owns nothing (of a pool of iterations whose VUs are all elsewhere).
    pub fn empty() -> Self {
        Stripe {
            levels: vec![Level {
                cycle: 1,
                positions: Vec::new(),
            }],
        }
    }

    /// Rebuilds a stripe from its levels (as shipped over the wire). A level without
    /// positions makes a stripe that owns nothing, as a zero weight does.
    ///
    /// Fails if a level's cycle is zero or its positions are unsorted or out of range.
    pub fn from_levels(levels: Vec<Level>) -> Result<Self, SegmentError> {
        for l in &levels {
            let sorted = l.positions.windows(2).all(|w| w[0] < w[1]);
            let in_range = l.cycle > 0 && l.positions.last().is_none_or(|&p| p < l.cycle);
            if !sorted || !in_range {
                return Err(SegmentError::InvalidLevel {
                    cycle: l.cycle,
                    positions: l.positions.clone(),
                });
            }
        }
        Ok(Stripe { levels })
    }

    /// The levels, outermost first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Splits this share by integer `weights`; the parts partition it exactly.
    /// A zero weight gets an empty share (it owns nothing).
    ///
    /// Fails if no weight is positive.
    pub fn split(&self, weights: &[u64]) -> Result<Vec<Stripe>, SegmentError> {
        let levels = split_levels(weights)?;
        Ok(levels
            .into_iter()
            .map(|level| {
                let mut levels = self.levels.clone();
                levels.push(level);
                Stripe { levels }
            })
            .collect())
    }

    /// Equal parts.
    pub fn split_even(&self, parts: usize) -> Vec<Stripe> {
        self.split(&vec![1; parts.max(1)])
            .unwrap_or_else(|_| vec![self.clone()])
    }

    /// Whether this share owns nothing.
    pub fn is_empty(&self) -> bool {
        self.levels.iter().any(|l| l.positions.is_empty())
    }

    /// The global number of this share's `local`-th unit (iteration or VU).
    /// Only meaningful when the stripe is not empty.
    pub fn global(&self, local: u64) -> u64 {
        self.levels.iter().rev().fold(local, |x, l| l.map(x))
    }

    /// The share this one was split from: its last split undone (the whole load for
    /// the whole load). An agent's share is its worker's parent.
    pub fn parent(&self) -> Stripe {
        let mut levels = self.levels.clone();
        levels.pop();
        Stripe { levels }
    }

    /// The number of this share's `local`-th unit within its [`parent`](Self::parent)
    /// (k6's per-instance numbers when the last split is over an agent's workers).
    /// Only meaningful when the stripe is not empty.
    pub fn in_parent(&self, local: u64) -> u64 {
        self.levels.last().map_or(local, |l| l.map(local))
    }

    /// How many of the global numbers `0..n` this share owns.
    pub fn count_below(&self, n: u64) -> u64 {
        self.levels.iter().fold(n, |c, l| {
            if l.positions.is_empty() {
                0
            } else {
                l.count_below(c)
            }
        })
    }

    /// Fraction of the whole load owned.
    pub fn share(&self) -> f64 {
        self.levels
            .iter()
            .map(|l| l.positions.len() as f64 / l.cycle as f64)
            .product()
    }
}

/// Lays out one cycle by smooth weighted round-robin (nginx's algorithm): each part
/// appears `weight` times, spread as evenly as integer positions allow.
fn split_levels(weights: &[u64]) -> Result<Vec<Level>, SegmentError> {
    let weights = scale_weights(weights)?;
    let cycle: u64 = weights.iter().sum();
    let mut current = vec![0i128; weights.len()];
    let mut positions = vec![Vec::new(); weights.len()];
    for pos in 0..cycle {
        for (c, &w) in current.iter_mut().zip(&weights) {
            *c += i128::from(w);
        }
        let mut best = 0;
        for k in 1..weights.len() {
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= i128::from(cycle);
        positions[best].push(pos);
    }
    Ok(positions
        .into_iter()
        .map(|positions| Level { cycle, positions })
        .collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Reduces weights by their gcd and scales them down proportionally if the cycle would be huge.
fn scale_weights(weights: &[u64]) -> Result<Vec<u64>, SegmentError> {
    let g = weights.iter().fold(0, |g, &w| gcd(g, w));
    if g == 0 {
        return Err(SegmentError::NoWeight(weights.to_vec()));
    }
    let mut w: Vec<u64> = weights.iter().map(|&x| x / g).collect();
    let sum: u64 = w.iter().sum();
    if sum > MAX_CYCLE {
        let scale = MAX_CYCLE as f64 / sum as f64;
        w = w
            .iter()
            .map(|&x| {
                if x == 0 {
                    0
                } else {
                    ((x as f64 * scale).round() as u64).max(1)
                }
            })
            .collect();
    }
    Ok(w)
}

/// Turns user weights such as `1.5` and `0.5` into integer weights (3 decimals kept).
pub fn integer_weights(weights: &[f64]) -> Vec<u64> {
    weights
        .iter()
        .map(|&w| {
            if w.is_finite() && w > 0.0 {
                (w * 1000.0).round() as u64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_split_share_numbers_within_its_parent_and_globally() {
        // Three agents, each over two workers: every worker's k-th unit has one global
        // number (unique over all six) and one within its agent (unique there).
        let agents = Stripe::full().split(&[1, 1, 1]).unwrap();
        let mut global = Vec::new();
        for agent in &agents {
            let mut local = Vec::new();
            for w in agent.split_even(2) {
                assert_eq!(w.parent(), *agent);
                let n = w.count_below(60);
                for k in 0..n {
                    global.push(w.global(k));
                    local.push(w.in_parent(k));
                    assert_eq!(agent.global(w.in_parent(k)), w.global(k));
                }
            }
            local.sort_unstable();
            assert_eq!(local, (0..20).collect::<Vec<_>>());
        }
        global.sort_unstable();
        assert_eq!(global, (0..60).collect::<Vec<_>>());
        assert_eq!(Stripe::full().parent(), Stripe::full());
        assert_eq!(Stripe::full().in_parent(7), 7);
    }

    #[test]
    fn thirds_interleave_round_robin() {
        let parts = Stripe::full().split(&[1, 1, 1]).unwrap();
        let owners: Vec<usize> = (0..9)
            .map(|g| {
                parts
                    .iter()
                    .position(|p| p.count_below(g + 1) > p.count_below(g))
                    .unwrap()
            })
            .collect();
        assert_eq!(owners, vec![0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(parts[1].global(0), 1);
        assert_eq!(parts[1].global(2), 7);
    }

    #[test]
    fn weighted_split_is_smooth() {
        let parts = Stripe::full().split(&[3, 1, 2]).unwrap();
        // Part 0 owns 3 of every 6, never more than 2 in a row.
        let owned: Vec<u64> = (0..3).map(|k| parts[0].global(k)).collect();
        assert_eq!(owned.len(), 3);
        assert!(owned.windows(3).all(|w| w[2] - w[0] > 2));
        assert_eq!(parts[0].count_below(600), 300);
        assert_eq!(parts[2].count_below(600), 200);
    }

    #[test]
    fn zero_weight_owns_nothing() {
        let parts = Stripe::full().split(&[1, 0]).unwrap();
        assert!(parts[1].is_empty());
        assert_eq!(parts[1].count_below(100), 0);
        assert_eq!(parts[0].count_below(100), 100);
        assert!(Stripe::full().split(&[0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn nested_splits_partition_exactly(
            outer in proptest::collection::vec(0u64..5, 1..5),
            inner in 1usize..4,
            n in 0u64..500,
        ) {
            prop_assume!(outer.iter().any(|&w| w > 0));
            let mut seen = vec![0u32; n as usize];
            let mut total = 0;
            for part in Stripe::full().split(&outer).unwrap() {
                for shard in part.split_even(inner) {
                    let c = shard.count_below(n);
                    total += c;
                    for k in 0..c {
                        let g = shard.global(k);
                        prop_assert!(g < n);
                        seen[g as usize] += 1;
                    }
                    if !shard.is_empty() {
                        // The next number owned is at or past n.
                        prop_assert!(shard.global(c) >= n);
                    }
                }
            }
            prop_assert_eq!(total, n);
            prop_assert!(seen.iter().all(|&s| s == 1));
        }

        #[test]
        fn shares_track_weights_closely(weights in proptest::collection::vec(1u64..6, 1..6), n in 1u64..2000) {
            let parts = Stripe::full().split(&weights).unwrap();
            let sum: u64 = weights.iter().sum();
            for (p, &w) in parts.iter().zip(&weights) {
                let expect = n as f64 * w as f64 / sum as f64;
                // Smooth round-robin keeps every prefix within one cycle's worth of the ideal.
                prop_assert!((p.count_below(n) as f64 - expect).abs() <= w as f64);
            }
        }
    }
}
