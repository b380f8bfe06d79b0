//! Bit-packed activation patterns: `n` bits per pattern, 64 rows per word.

use std::collections::HashSet;

/// A set of `P` activation patterns over `n` samples, pattern `i` being the diagonal of `D_i`.
///
/// Stored column by column, `ceil(n / 64)` words per pattern (8x less memory than bytes); row `j`
/// of pattern `i` is bit `j % 64` of word `i * words + j / 64`. Bits past `n` are always zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masks {
    n: usize,
    words: usize,
    bits: Vec<u64>,
}

impl Masks {
    /// An empty set of patterns over `n` samples.
    pub fn new(n: usize) -> Self {
        Masks {
            n,
            words: n.div_ceil(64),
            bits: Vec::new(),
        }
    }

    /// Number of samples (rows).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.bits.len().checked_div(self.words).unwrap_or(0)
    }

    /// True when there is no pattern.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// Words per pattern.
    pub fn words_per_pattern(&self) -> usize {
        self.words
    }

    /// The words of pattern `i`.
    pub fn pattern_words(&self, i: usize) -> &[u64] {
        &self.bits[i * self.words..(i + 1) * self.words]
    }

    /// Whether sample `row` is active in pattern `i`.
    #[inline]
    pub fn get(&self, row: usize, i: usize) -> bool {
        (self.bits[i * self.words + row / 64] >> (row % 64)) & 1 == 1
    }

    /// Appends a pattern given as packed words (bits past `n` must be zero).
    pub fn push_words(&mut self, w: &[u64]) {
        debug_assert_eq!(w.len(), self.words);
        self.bits.extend_from_slice(w);
    }

    /// Appends a pattern given as booleans.
    pub fn push_bools(&mut self, active: &[bool]) {
        debug_assert_eq!(active.len(), self.n);
        self.push_words(&pack(active));
    }

    /// Pattern `i` as booleans.
    pub fn to_bools(&self, i: usize) -> Vec<bool> {
        (0..self.n).map(|j| self.get(j, i)).collect()
    }

    /// Number of active samples in pattern `i`.
    pub fn count_active(&self, i: usize) -> usize {
        self.pattern_words(i)
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }

    /// Keeps only the patterns whose index is in `keep` (in that order).
    pub fn select(&self, keep: &[usize]) -> Masks {
        let mut out = Masks::new(self.n);
        for &i in keep {
            out.push_words(self.pattern_words(i));
        }
        out
    }

    /// Memory used by the bits, in bytes.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

/// Packs booleans into 64-bit words (row `j` -> bit `j % 64` of word `j / 64`).
pub fn pack(active: &[bool]) -> Vec<u64> {
    let mut w = vec![0u64; active.len().div_ceil(64)];
    for (j, &a) in active.iter().enumerate() {
        if a {
            w[j / 64] |= 1u64 << (j % 64);
        }
    }
    w
}

/// Collects patterns while dropping duplicates (a hash set of their packed words).
#[derive(Debug)]
pub struct PatternSet {
    masks: Masks,
    seen: HashSet<Vec<u64>>,
}

impl PatternSet {
    /// An empty set over `n` samples.
    pub fn new(n: usize) -> Self {
        PatternSet {
            masks: Masks::new(n),
            seen: HashSet::new(),
        }
    }

    /// Adds a packed pattern unless it is already there; returns whether it was new.
    pub fn insert_words(&mut self, w: Vec<u64>) -> bool {
        if self.seen.contains(&w) {
            return false;
        }
        self.masks.push_words(&w);
        self.seen.insert(w);
        true
    }

    /// Adds a pattern given as booleans; returns whether it was new.
    pub fn insert_bools(&mut self, active: &[bool]) -> bool {
        self.insert_words(pack(active))
    }

    /// Whether the pattern is already in the set.
    pub fn contains_words(&self, w: &[u64]) -> bool {
        self.seen.contains(w)
    }

    /// Number of distinct patterns so far.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// The patterns, in insertion order.
    pub fn into_masks(self) -> Masks {
        self.masks
    }
}
