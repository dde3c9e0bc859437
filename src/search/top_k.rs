//! Exact top-k: a scored passage, the order results are ranked by (ties by position, so
//! results never depend on how a search was split), and a streaming selection that keeps
//! O(k) while a scan pushes every passage.

/// A scored passage, by its position in the index (shard order, then row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub passage: usize,
    pub score: f32,
}

/// Orders hits best first; equal scores keep index order, so results are deterministic.
pub(crate) fn better(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.passage.cmp(&b.passage))
}

/// The `k` best of `hits` (in any order), best first.
pub fn top_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, better);
        hits.truncate(k);
    }
    hits.sort_by(better);
    hits
}

/// Streaming exact top-k over hits pushed in passage order: most hits fail one comparison
/// against the current k-th best, so a 100k-passage scan costs little beyond scoring and
/// allocates O(k).
pub(crate) struct TopK {
    k: usize,
    kept: Vec<Hit>,
    /// The k-th best score once `k` hits are known; anything not above it cannot enter
    /// (ties lose to the earlier passage already kept).
    floor: Option<f32>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            kept: Vec::with_capacity(k.saturating_mul(2).min(1 << 16)),
            floor: None,
        }
    }

    /// Pushes the scores of passages `start..`, in order.
    pub(crate) fn push_run(&mut self, start: usize, scores: &[f32]) {
        for (i, &score) in scores.iter().enumerate() {
            self.push(Hit {
                passage: start + i,
                score,
            });
        }
    }

    pub(crate) fn push(&mut self, hit: Hit) {
        if self.k == 0 || self.floor.is_some_and(|floor| hit.score <= floor) {
            return;
        }
        self.kept.push(hit);
        if self.kept.len() >= self.k.saturating_mul(2).max(64) {
            self.shrink();
        }
    }

    /// Keeps the k best and raises the floor to the k-th score.
    fn shrink(&mut self) {
        if self.kept.len() > self.k {
            self.kept.select_nth_unstable_by(self.k - 1, better);
            self.kept.truncate(self.k);
            self.floor = Some(self.kept[self.k - 1].score);
        }
    }

    pub(crate) fn into_sorted(mut self) -> Vec<Hit> {
        self.shrink();
        self.kept.sort_by(better);
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_exact_and_breaks_ties_by_position() {
        let hits: Vec<Hit> = [0.1, 0.9, 0.5, 0.9, -1.0, 0.7]
            .iter()
            .enumerate()
            .map(|(passage, &score)| Hit { passage, score })
            .collect();
        let top: Vec<usize> = top_k(hits.clone(), 3).iter().map(|h| h.passage).collect();
        assert_eq!(top, vec![1, 3, 5]);
        assert_eq!(top_k(hits.clone(), 10).len(), 6);
        assert!(top_k(hits, 0).is_empty());
    }

    #[test]
    fn streaming_top_k_equals_sorting_everything() {
        // Few distinct scores, so ties cross every shrink of the buffer.
        let hits: Vec<Hit> = (0..5000)
            .map(|passage| Hit {
                passage,
                score: ((passage * 7919) % 23) as f32 * 0.5 - 3.0,
            })
            .collect();
        for k in [0, 1, 3, 10, 64, 100, 4999, 5000, 6000] {
            let mut streamed = TopK::new(k);
            hits.iter().for_each(|&h| streamed.push(h));
            let mut all = hits.clone();
            all.sort_by(better);
            all.truncate(k);
            assert_eq!(streamed.into_sorted(), all, "k = {k}");
        }
    }
}
