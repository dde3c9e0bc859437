//! Training the product quantizer of an index of several lists, and encoding every passage
//! with it (what the codes mean: `crate::index::codebook`). Deterministic, as the lists
//! are: the same vectors always give the same codebook and codes.

use rayon::prelude::*;

use crate::index::codebook::slice_bounds;
use crate::index::{Codebook, ListCodes};
use crate::kernels::pq::CODES_PER_SLICE;

/// Residuals the codebook is trained on at most (an evenly spaced sample): 128 per centroid.
const TRAINING_SAMPLE: usize = 128 * CODES_PER_SLICE;
const KMEANS_ITERATIONS: usize = 10;

/// Code bytes a passage by default: one per 8 dimensions (48 for 384), which ranks a
/// probed list well enough that rescoring the best few dozen rows finds the exact top 10
/// (BENCHMARKS.md, "Browser at scale").
pub fn default_code_bytes(dims: usize) -> usize {
    dims.div_ceil(8).clamp(1, u16::MAX as usize)
}

/// A passage vector as its list stores it beside its row: `α` (f16-rounded, as stored) and
/// the residual `v − α·c` the codes approximate.
pub fn split(v: &[f32], centroid: &[f32]) -> (f32, Vec<f32>) {
    let cc: f32 = centroid.iter().map(|x| x * x).sum();
    let vc: f32 = v.iter().zip(centroid).map(|(a, b)| a * b).sum();
    let alpha = if cc > 0.0 { vc / cc } else { 0.0 };
    let alpha = half::f16::from_f32(alpha).to_f32();
    let residual = v.iter().zip(centroid).map(|(x, c)| x - alpha * c).collect();
    (alpha, residual)
}

/// k-means (Euclidean) of the points of one slice: `k` centroids, started from evenly
/// spaced points; a centroid left without points keeps its place.
fn kmeans(points: &[&[f32]], k: usize) -> Vec<Vec<f32>> {
    let mut centroids: Vec<Vec<f32>> = (0..k)
        .map(|i| points[i * points.len() / k].to_vec())
        .collect();
    let width = centroids[0].len();
    for _ in 0..KMEANS_ITERATIONS {
        let mut sums = vec![vec![0f32; width]; k];
        let mut counts = vec![0usize; k];
        for p in points {
            let c = nearest(p, &centroids);
            counts[c] += 1;
            for (s, x) in sums[c].iter_mut().zip(*p) {
                *s += x;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                centroids[c] = sums[c].iter().map(|s| s / counts[c] as f32).collect();
            }
        }
    }
    centroids
}

fn nearest(p: &[f32], centroids: &[Vec<f32>]) -> usize {
    let mut best = (0, f32::INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let d: f32 = p.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

/// Which of `n` vectors the codebook is trained on: evenly spaced, at most
/// `TRAINING_SAMPLE`.
pub fn training_sample(n: usize) -> Vec<usize> {
    let size = n.min(TRAINING_SAMPLE);
    (0..size).map(|i| i * n / size).collect()
}

/// Trains `m` slices of up to 256 centroids each on `sample` (residuals; see
/// [`training_sample`]).
pub fn train(sample: &[Vec<f32>], dims: usize, m: usize) -> Codebook {
    let k = sample.len().clamp(1, CODES_PER_SLICE);
    let slices: Vec<Vec<Vec<f32>>> = (0..m)
        .into_par_iter()
        .map(|s| {
            let bounds = slice_bounds(dims, m, s);
            let points: Vec<&[f32]> = sample.iter().map(|r| &r[bounds.clone()]).collect();
            // `k` is at most the points: every centroid starts on its own point.
            if points.is_empty() {
                return vec![vec![0.0; bounds.len()]];
            }
            kmeans(&points, k)
        })
        .collect();
    Codebook::new(dims, &slices)
}

/// The codebook of `m` code bytes trained on the residuals of an evenly spaced sample of
/// the passages (in list order), and each list's codes: `members[i]` are the numbers of
/// list `i`'s passages in `vectors`, `centroids[i]` its centroid as stored (int8, decoded).
pub fn quantize_lists(
    vectors: &[Vec<f32>],
    members: &[Vec<usize>],
    centroids: &[Vec<f32>],
    m: usize,
) -> (Codebook, Vec<ListCodes>) {
    let dims = centroids.first().map_or(0, Vec::len);
    let in_order: Vec<(usize, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(list, of)| of.iter().map(move |&i| (list, i)))
        .collect();
    let residuals: Vec<Vec<f32>> = training_sample(in_order.len())
        .into_iter()
        .map(|at| {
            let (list, i) = in_order[at];
            split(&vectors[i], &centroids[list]).1
        })
        .collect();
    let codebook = train(&residuals, dims, m);
    let of_list: Vec<Vec<&[f32]>> = members
        .iter()
        .map(|of| of.iter().map(|&i| vectors[i].as_slice()).collect())
        .collect();
    let codes = encode_lists(&codebook, &of_list, centroids);
    (codebook, codes)
}

/// Each list's codes: `members[i]` are list `i`'s vectors, `centroids[i]` its centroid as
/// stored (int8, decoded).
pub fn encode_lists(
    codebook: &Codebook,
    members: &[Vec<&[f32]>],
    centroids: &[Vec<f32>],
) -> Vec<ListCodes> {
    members
        .par_iter()
        .zip(centroids)
        .map(|(vectors, centroid)| {
            let mut out = ListCodes::default();
            for v in vectors {
                let (alpha, residual) = split(v, centroid);
                out.alphas.push(alpha);
                out.codes.extend(codebook.encode(&residual));
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_approximate_dot_products_and_training_is_deterministic() {
        // 64 vectors of 16 dims around two directions.
        let dims = 16;
        let vectors: Vec<Vec<f32>> = (0..64)
            .map(|i| {
                (0..dims)
                    .map(|j| {
                        let base = if (i % 2 == 0) == (j < 8) { 1.0 } else { 0.0 };
                        base + 0.1 * (((i * 7 + j * 13) % 11) as f32 - 5.0)
                    })
                    .collect()
            })
            .collect();
        let centroid = vec![0.25f32; dims];
        let residuals: Vec<Vec<f32>> = vectors.iter().map(|v| split(v, &centroid).1).collect();
        let cb = train(&residuals, dims, 4);
        assert_eq!(cb, train(&residuals, dims, 4));
        assert_eq!((cb.m, cb.k), (4, 64));
        let members = vec![vectors.iter().map(Vec::as_slice).collect::<Vec<_>>()];
        let codes = &encode_lists(&cb, &members, std::slice::from_ref(&centroid))[0];
        let q: Vec<f32> = (0..dims).map(|j| (j as f32 - 7.5) / 8.0).collect();
        let qc: f32 = q.iter().zip(&centroid).map(|(a, b)| a * b).sum();
        let table = cb.table(&q);
        let mut approx = Vec::new();
        crate::kernels::pq::score_codes(&table, &codes.codes, 4, &mut approx);
        for (i, v) in vectors.iter().enumerate() {
            let exact: f32 = q.iter().zip(v).map(|(a, b)| a * b).sum();
            let got = approx[i] + codes.alphas[i] * qc;
            // 64 centroids a slice for 64 points: every residual is nearly a centroid.
            assert!((got - exact).abs() < 0.02, "{i}: {got} vs {exact}");
        }
    }
}
