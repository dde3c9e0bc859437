//! Cutting an index into parts: vector lists by spherical k-means (IVF), passage fragments
//! by size. Deterministic: the same vectors always give the same lists, so indexing the
//! same corpus twice writes the same bytes.

use rayon::prelude::*;

/// Vectors of an index whose rows fit in this many bytes load in one piece: one list,
/// scanned whole by every query. Below it (about 10k passages of 384 int8 dimensions) a
/// query probing lists must scan a quarter of them to find 95 % of the exact top 10 (SciFact,
/// measured), so lists would save under 4× the bytes at the cost of a round trip and recall.
pub const ONE_LIST_BYTES: usize = 4 << 20;
/// Runs this short keep input order: ordering them further would not merge any range.
const ORDERED_RUN: usize = 8;

/// Passage order within a list: split in two by spherical 2-means, each half ordered the same
/// way, down to runs of [`ORDERED_RUN`] (input order within a run) — so similar passages sit
/// together at every scale, the rows a query rescores come in few runs (fewer range
/// requests), and its hits share fragments. An index of one list keeps input order: it is
/// fetched whole.
pub fn order_passages(vectors: &[Vec<f32>], p: &Partitioning) -> Vec<usize> {
    let lists = p.centroids.len();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); lists];
    for (i, &list) in p.assignment.iter().enumerate() {
        members[list].push(i);
    }
    if lists == 1 {
        return members.concat();
    }
    members
        .par_iter()
        .map(|list| bisected(vectors, list))
        .collect::<Vec<_>>()
        .concat()
}

/// `passages` (numbers into `vectors`) ordered by recursive bisection (see `order_passages`).
fn bisected(vectors: &[Vec<f32>], passages: &[usize]) -> Vec<usize> {
    if passages.len() <= ORDERED_RUN {
        return passages.to_vec();
    }
    let local: Vec<Vec<f32>> = passages.iter().map(|&i| vectors[i].clone()).collect();
    let halves = partition(&local, 2);
    let side = |wanted: usize| -> Vec<usize> {
        passages
            .iter()
            .zip(&halves.assignment)
            .filter(|(_, &half)| half == wanted)
            .map(|(&i, _)| i)
            .collect()
    };
    let (first, second) = (side(0), side(1));
    if first.is_empty() || second.is_empty() {
        return passages.to_vec(); // indivisible (identical vectors): input order
    }
    [bisected(vectors, &first), bisected(vectors, &second)].concat()
}

/// Passage records per fragment are chosen to make fragments about this size: a result
/// list fetches a few of them.
pub const FRAGMENT_BYTES: usize = 16 << 10;
/// Fragments an index is cut into at most, whatever its size: static hosts cap the files of
/// a site (Cloudflare Pages: 20,000), and lists and the model take some.
pub const MAX_FRAGMENTS: usize = 15_000;
/// Candidates a search of an index of several lists scores exactly on their rows, after the
/// codes ranked the probed lists' passages.
pub const DEFAULT_RESCORE: usize = 256;
/// Training vectors per list: k-means is trained on a deterministic sample of this many
/// per centroid (FAISS warns below 39).
const SAMPLE_PER_LIST: usize = 64;
const KMEANS_ITERATIONS: usize = 12;

/// The lists and probe depth the indexer chooses for `n` vectors of `row_bytes` each, in
/// files of at most `max_file_bytes`: √n lists (the usual IVF setting), at least enough
/// for lists of half the file cap, and the least probe depth, [`default_probe`].
pub fn default_layout(n: usize, row_bytes: usize, max_file_bytes: usize) -> (usize, usize) {
    let bytes = n.saturating_mul(row_bytes);
    if bytes <= ONE_LIST_BYTES.min(max_file_bytes.saturating_sub(16)) {
        return (1, 1);
    }
    let lists = ((n as f64).sqrt().round() as usize)
        .max(bytes.div_ceil(max_file_bytes / 2))
        .clamp(2, n.max(2));
    (lists, default_probe(lists))
}

/// The least depth an index of `lists` lists is probed at: 0.3·√lists, at least 4 (4 of
/// 139, 10 of 1,000) — the floor of the depth the indexer measures on the corpus
/// (`probe::calibrate`), since real queries may lie farther from the passages than the
/// pseudo-queries it measures with.
pub fn default_probe(lists: usize) -> usize {
    ((0.3 * (lists as f64).sqrt()).ceil() as usize)
        .max(4)
        .clamp(1, lists)
}

/// Which list each vector belongs to, and the lists' unit-length centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct Partitioning {
    pub centroids: Vec<Vec<f32>>,
    pub assignment: Vec<usize>,
}

/// Eight running sums, so the compiler vectorizes the loop (one sum would have to add in
/// order): k-means over a million vectors is a few hundred billion of these products.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// The centroid most similar to `v` (highest dot product; ties to the lower number) and
/// that similarity.
fn nearest(v: &[f32], centroids: &[Vec<f32>]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let s = dot(v, c);
        if s > best.1 {
            best = (i, s);
        }
    }
    best
}

/// Spherical k-means: vectors are compared by direction (unit centroids, highest dot
/// product), as a query probes lists by its dot product with their centroids.
pub fn partition(vectors: &[Vec<f32>], lists: usize) -> Partitioning {
    let n = vectors.len();
    let lists = lists.clamp(1, n.max(1));
    if lists == 1 {
        let dims = vectors.first().map_or(0, Vec::len);
        let mean: Vec<f32> = (0..dims)
            .map(|j| vectors.iter().map(|v| v[j]).sum::<f32>())
            .collect();
        return Partitioning {
            centroids: vec![normalized(&mean)],
            assignment: vec![0; n],
        };
    }
    let units: Vec<Vec<f32>> = vectors.par_iter().map(|v| normalized(v)).collect();
    // An evenly spaced sample: deterministic, and spread over the whole corpus order.
    let sample_size = (lists * SAMPLE_PER_LIST).min(n);
    let sample: Vec<&[f32]> = (0..sample_size)
        .map(|i| units[i * n / sample_size].as_slice())
        .collect();
    let mut centroids: Vec<Vec<f32>> = (0..lists)
        .map(|i| sample[i * sample.len() / lists].to_vec())
        .collect();
    for _ in 0..KMEANS_ITERATIONS {
        let nearest_of: Vec<(usize, f32)> =
            sample.par_iter().map(|v| nearest(v, &centroids)).collect();
        let dims = centroids[0].len();
        let mut sums = vec![vec![0f32; dims]; lists];
        let mut counts = vec![0usize; lists];
        for (v, &(c, _)) in sample.iter().zip(&nearest_of) {
            counts[c] += 1;
            for (s, x) in sums[c].iter_mut().zip(v.iter()) {
                *s += x;
            }
        }
        // An empty list takes the sample vector its centroid serves worst, so no list
        // stays empty while others are crowded.
        let mut worst: Vec<usize> = (0..sample.len()).collect();
        worst.sort_by(|&a, &b| nearest_of[a].1.total_cmp(&nearest_of[b].1).then(a.cmp(&b)));
        let mut reseed = worst.into_iter();
        for c in 0..lists {
            centroids[c] = if counts[c] > 0 {
                normalized(&sums[c])
            } else {
                reseed
                    .next()
                    .map_or_else(|| centroids[c].clone(), |i| sample[i].to_vec())
            };
        }
    }
    let assignment = units.par_iter().map(|v| nearest(v, &centroids).0).collect();
    Partitioning {
        centroids,
        assignment,
    }
}

/// Cuts records of these sizes (in passage order) into fragments of about `target_bytes`
/// each — larger when that would make more than [`MAX_FRAGMENTS`] — and never over
/// `max_file_bytes`.
pub fn plan_fragments(
    sizes: &[usize],
    target_bytes: usize,
    max_file_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let total: usize = sizes.iter().sum();
    let target = target_bytes
        .max(total.div_ceil(MAX_FRAGMENTS))
        .min(max_file_bytes);
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 16);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (bytes + size > max_file_bytes || bytes >= target) {
            ranges.push(start..i);
            (start, bytes) = (i, 16);
        }
        bytes += size;
    }
    ranges.push(start..sizes.len());
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around `centres`, several each, interleaved in corpus order.
    fn clustered(centres: &[Vec<f32>], per: usize) -> Vec<Vec<f32>> {
        (0..per)
            .flat_map(|i| {
                centres.iter().map(move |c| {
                    c.iter()
                        .enumerate()
                        .map(|(j, x)| x + 0.05 * (((i * 7 + j * 3) % 5) as f32 - 2.0))
                        .collect()
                })
            })
            .collect()
    }

    #[test]
    fn kmeans_finds_well_separated_clusters_and_is_deterministic() {
        let dims = 8;
        let centres: Vec<Vec<f32>> = (0..4)
            .map(|c| {
                (0..dims)
                    .map(|j| if j == c * 2 { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let vectors = clustered(&centres, 50);
        let p = partition(&vectors, 4);
        assert_eq!(p, partition(&vectors, 4));
        // Points of one true cluster share a list, and no two clusters share one.
        for c in 0..4 {
            let lists: std::collections::HashSet<usize> =
                (0..50).map(|i| p.assignment[i * 4 + c]).collect();
            assert_eq!(lists.len(), 1, "cluster {c} split: {lists:?}");
        }
        let firsts: std::collections::HashSet<usize> = (0..4).map(|c| p.assignment[c]).collect();
        assert_eq!(firsts.len(), 4);
        for c in &p.centroids {
            assert!((dot(c, c) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn layouts_scale_with_the_corpus() {
        let cap = 20 << 20;
        assert_eq!(default_layout(2000, 388, cap), (1, 1));
        assert_eq!(default_layout(10_000, 388, cap), (1, 1));
        assert_eq!(default_layout(50_000, 388, cap), (224, 5));
        assert_eq!(default_layout(1_000_000, 388, cap), (1000, 10));
        assert_eq!(default_layout(16_000_000, 388, cap), (4000, 19));
        // A small file cap asks for more, smaller lists.
        assert_eq!(default_layout(2000, 388, 20_000), (78, 4));
        assert_eq!(default_probe(2), 2);
    }

    #[test]
    fn fragments_are_about_the_target_size_and_under_the_cap() {
        let sizes = vec![1000; 100];
        let ranges = plan_fragments(&sizes, FRAGMENT_BYTES, 1 << 20);
        // 16-byte header + 17 records reach 16 KiB.
        assert_eq!(ranges.len(), 6);
        assert!(ranges.iter().all(|r| r.len() == 17 || r == &(85..100)));
        assert_eq!(plan_fragments(&sizes, FRAGMENT_BYTES, 2500).len(), 50);
        assert_eq!(plan_fragments(&sizes, 4000, 1 << 20).len(), 25);
        assert_eq!(plan_fragments(&[], FRAGMENT_BYTES, 2500), vec![0..0]);
        // A huge corpus gets bigger fragments instead of more files.
        let many = vec![100; 10_000_000];
        assert!(plan_fragments(&many, FRAGMENT_BYTES, 20 << 20).len() <= MAX_FRAGMENTS + 1);
    }
}
