//! Exact int8 matrix products (u8 activations × i8 weights → i32 sums), the kernel of
//! every int8 linear layer dotfind runs in the browser (and natively on CPUs with AMX).
//!
//! The weights are packed once, at load, in the [`Layout`] this build runs fastest, so a
//! query streams each weight from memory once:
//! - plain wasm SIMD widens both sides to i16 for the exact `i32x4.dot_i16x8_s` (8
//!   multiply-adds per instruction, no split of the weights);
//! - relaxed SIMD's int8 dot product needs a 7-bit second operand: a matrix whose every
//!   column spans at most 128 values (7-bit weights) is offset per column into `[0, 127]`
//!   (one dot per 16 products), any other is split into two 7-bit planes;
//! - natively, Intel AMX tiles ([`super::amx`]); elsewhere on x86-64, the relaxed layouts
//!   with AVX2's `vpmaddubsw` + `vpmaddwd`, the pair relaxed SIMD's dot lowers to on x86.
//!
//! Integer accumulation is exact, so every layout gives the same sums as ONNX
//! `MatMulInteger` (and tract's evaluation of it), bit for bit.

use tract_core::internal::*;

use super::amx;

mod micro;
mod pack;

#[cfg(test)]
use pack::column_offsets;
pub use pack::PackedWeights;

/// How the weights are packed, which picks the kernel.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Layout {
    /// Two columns per 16-deep block, widened to i16 at run time for `i32x4.dot_i16x8_s`
    /// (plain SIMD: 8 multiply-adds per instruction, no split).
    WidePairs,
    /// Four columns per 4-deep block, each weight split into two 7-bit planes (`w & 0x7f` and
    /// `w < 0`, so `w = lo − 128·hi`) for `i32x4.relaxed_dot_i8x16_i7x16_add_s`, whose second
    /// operand must be 7-bit to be exact everywhere; the activations, offset to i8, are the
    /// first. The split is done once at load, not per block as tract's kernel does.
    SplitQuads,
    /// SplitQuads' blocks with a single plane: every column `j` offset by `o_j = −min_j` into
    /// `[0, 127]`, so `Σ a·w = Σ a·(w + o_j) − o_j·Σ a` takes one relaxed dot per 16 products.
    /// Only for matrices whose every column spans ≤ 128 values (7-bit weights).
    OffsetQuads,
    /// Intel AMX tiles (native x86-64 on Linux, where the CPU has them): per 16-column block,
    /// per 64-deep step, one `tdpbusd` weight tile ([`super::amx`]).
    AmxTiles,
}

impl Layout {
    /// `k` zero-padded to the block depth.
    fn padded_depth(self, k: usize) -> usize {
        match self {
            Layout::WidePairs => k.div_ceil(DEPTH) * DEPTH,
            Layout::SplitQuads | Layout::OffsetQuads => k.div_ceil(QUAD) * QUAD,
            Layout::AmxTiles => k.div_ceil(amx::DEPTH) * amx::DEPTH,
        }
    }

    /// Packed bytes for `n` columns of depth `kp` (columns padded to whole blocks).
    fn packed_len(self, kp: usize, n: usize) -> usize {
        match self {
            Layout::WidePairs => n.div_ceil(COLS) * COLS * kp,
            Layout::SplitQuads => {
                n.div_ceil(QUAD).div_ceil(GROUPS) * GROUPS * Self::group_bytes(kp)
            }
            Layout::OffsetQuads => {
                n.div_ceil(QUAD).div_ceil(OFFSET_GROUPS) * OFFSET_GROUPS * Self::plane_bytes(kp)
            }
            Layout::AmxTiles => amx::packed_len(kp, n),
        }
    }

    /// SplitQuads: bytes of one 4-column group (lo and hi planes of every 4-deep block).
    fn group_bytes(kp: usize) -> usize {
        (kp / QUAD) * 2 * QUAD * QUAD
    }

    /// OffsetQuads: bytes of one 4-column group (one plane).
    fn plane_bytes(kp: usize) -> usize {
        (kp / QUAD) * QUAD * QUAD
    }

    /// Where weight `(depth, j)` goes. WidePairs: per column pair, per 16-deep block, 16
    /// weights of each column. SplitQuads: per 4-column group, per 4-deep block, the lo plane
    /// (4 weights of each column), then the hi plane 16 bytes further. OffsetQuads: the same
    /// without the hi plane.
    fn place(self, kp: usize, depth: usize, j: usize) -> usize {
        match self {
            Layout::WidePairs => {
                (j / COLS) * COLS * kp
                    + (depth / DEPTH) * COLS * DEPTH
                    + (j % COLS) * DEPTH
                    + depth % DEPTH
            }
            Layout::SplitQuads => {
                (j / QUAD) * Self::group_bytes(kp)
                    + (depth / QUAD) * 2 * QUAD * QUAD
                    + (j % QUAD) * QUAD
                    + depth % QUAD
            }
            Layout::OffsetQuads => {
                (j / QUAD) * Self::plane_bytes(kp)
                    + (depth / QUAD) * QUAD * QUAD
                    + (j % QUAD) * QUAD
                    + depth % QUAD
            }
            Layout::AmxTiles => amx::place(kp, depth, j),
        }
    }

    /// The layout this build's SIMD (or this CPU's AMX) runs fastest, for weights whose
    /// columns do or do not all fit 7 bits.
    pub fn for_this_target(seven_bit_columns: bool) -> Self {
        if amx::available() {
            Layout::AmxTiles
        } else if !quad_kernels_in_simd() {
            Layout::WidePairs
        } else if seven_bit_columns {
            Layout::OffsetQuads
        } else {
            Layout::SplitQuads
        }
    }
}

/// Whether the quad layouts' micro-kernels run in SIMD here: relaxed-SIMD wasm builds, and
/// natively x86-64 CPUs with AVX2.
pub fn quad_kernels_in_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    if micro::avx2::available() {
        return true;
    }
    cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"))
}

/// WidePairs: depth of one block (16 i8 weights, widened to two i16x8 vectors).
const DEPTH: usize = 16;
/// WidePairs: output columns per block.
const COLS: usize = 2;
/// WidePairs: activation rows per micro-kernel call.
const ROWS: usize = 4;
/// SplitQuads: depth of one block and columns per group (one i32x4 of sums).
const QUAD: usize = 4;
/// SplitQuads: column groups per micro-kernel call.
const GROUPS: usize = 2;
/// SplitQuads and OffsetQuads: activation rows per micro-kernel call.
const SPLIT_ROWS: usize = 2;
/// OffsetQuads: column groups per micro-kernel call (one plane leaves registers for more).
const OFFSET_GROUPS: usize = 4;

/// `out[r, j] = Σ_k (x[r, k] − zero_point) · w[k, j]` for `rows` rows of `x` (`[rows, k]`,
/// row-major), exactly, in i32.
pub fn matmul(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) -> TractResult<()> {
    let (k, n) = (w.k, w.n);
    ensure!(
        x.len().is_multiple_of(k) && out.len() == x.len() / k * n,
        "int8 matmul: {} activations and {} outputs for {k} × {n} weights",
        x.len(),
        out.len()
    );
    match w.layout {
        Layout::WidePairs => matmul_wide_pairs(x, zero_point, w, out),
        Layout::SplitQuads => matmul_split_quads(x, zero_point, w, out),
        Layout::OffsetQuads => matmul_offset_quads(x, zero_point, w, out),
        Layout::AmxTiles => {
            let shape = (k, w.k_padded, n);
            return amx::matmul(x, zero_point, &w.blocks, &w.column_sums, shape, out);
        }
    }
    Ok(())
}

fn matmul_wide_pairs(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations widened to i16 (u8 as is); Σ x·w − zp·Σ w.
    let block_bytes = COLS * w.k_padded;
    let finish = |_row: usize, sums: &mut [i32]| {
        for (sum, &column) in sums.iter_mut().zip(&w.column_sums) {
            *sum -= zero_point * column;
        }
    };
    matmul_blocks::<_, ROWS, COLS>(
        x,
        w,
        out,
        block_bytes,
        i16::from,
        micro::micro_kernel,
        finish,
    );
}

fn matmul_split_quads(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations offset to i8 (x − 128); Σ (x − zp)·w = Σ (x − 128)·w + (128 − zp)·Σ w.
    let block_bytes = GROUPS * Layout::group_bytes(w.k_padded);
    let kernel = |rows: &[i8], blocks: &[i8], kp: usize| {
        micro::split_micro_kernel(rows, blocks, kp).map(|groups| flatten_groups(&groups))
    };
    let correction = 128 - zero_point;
    let finish = |_row: usize, sums: &mut [i32]| {
        for (sum, &column) in sums.iter_mut().zip(&w.column_sums) {
            *sum += correction * column;
        }
    };
    matmul_blocks::<_, SPLIT_ROWS, { GROUPS * QUAD }>(
        x,
        w,
        out,
        block_bytes,
        offset_to_i8,
        kernel,
        finish,
    );
}

fn matmul_offset_quads(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations offset to i8 (a = x − 128), weights by o_j:
    // Σ (x − zp)·w = Σ a·(w + o_j) − o_j·Σ a + (128 − zp)·Σ w.
    let block_bytes = OFFSET_GROUPS * Layout::plane_bytes(w.k_padded);
    let kernel = |rows: &[i8], blocks: &[i8], kp: usize| {
        micro::offset_micro_kernel(rows, blocks, kp).map(|groups| flatten_groups(&groups))
    };
    let row_sums: Vec<i32> = x
        .chunks_exact(w.k)
        .map(|row| row.iter().map(|&v| i32::from(v) - 128).sum())
        .collect();
    let correction = 128 - zero_point;
    let finish = |row: usize, sums: &mut [i32]| {
        let row_sum = row_sums[row];
        let columns = w.column_sums.iter().zip(&w.column_offsets);
        for (sum, (&column, &offset)) in sums.iter_mut().zip(columns) {
            *sum += correction * column - offset * row_sum;
        }
    };
    matmul_blocks::<_, SPLIT_ROWS, { OFFSET_GROUPS * QUAD }>(
        x,
        w,
        out,
        block_bytes,
        offset_to_i8,
        kernel,
        finish,
    );
}

/// `x − 128` as i8: the relaxed-SIMD kernels' signed activations.
fn offset_to_i8(x: u8) -> i8 {
    (x ^ 0x80) as i8
}

/// A quad micro-kernel's sums per column group of 4, as one row of `N = G · 4` column sums.
fn flatten_groups<const G: usize, const N: usize>(groups: &[[i32; QUAD]; G]) -> [i32; N] {
    debug_assert_eq!(N, G * QUAD);
    let mut flat = [0i32; N];
    for (columns, lanes) in flat.chunks_exact_mut(QUAD).zip(groups) {
        columns.copy_from_slice(lanes);
    }
    flat
}

/// The loop the layouts share: activations converted by `convert` into `R`-row blocks
/// (zero-padded rows and depth, which add nothing), weight blocks of `C` columns outermost (a
/// block's weights stay in L1 while every row block reads them), the kernel's sums stored,
/// then `finish(r, out row r)` adds the layout's zero-point and offset terms, a whole row at
/// a time (a loop compilers vectorize, where one call per sum cost a sixth of the time).
fn matmul_blocks<A: Copy + Default, const R: usize, const C: usize>(
    x: &[u8],
    w: &PackedWeights,
    out: &mut [i32],
    block_bytes: usize,
    convert: impl Fn(u8) -> A,
    kernel: impl Fn(&[A], &[i8], usize) -> [[i32; C]; R],
    finish: impl Fn(usize, &mut [i32]),
) {
    let (k, n, kp) = (w.k, w.n, w.k_padded);
    let rows = x.len() / k;
    let mut converted = vec![A::default(); rows.div_ceil(R) * R * kp];
    for (dst, src) in converted.chunks_exact_mut(kp).zip(x.chunks_exact(k)) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = convert(s);
        }
    }
    for (column_block, blocks) in w.blocks.chunks_exact(block_bytes).enumerate() {
        for (row_block, rows_converted) in converted.chunks_exact(R * kp).enumerate() {
            let sums = kernel(rows_converted, blocks, kp);
            let first_column = column_block * C;
            let columns = C.min(n - first_column);
            for (r, row_sums) in sums.iter().enumerate() {
                let row = row_block * R + r;
                if row >= rows {
                    break;
                }
                out[row * n + first_column..][..columns].copy_from_slice(&row_sums[..columns]);
            }
        }
    }
    for (row, sums) in out.chunks_exact_mut(n).enumerate() {
        finish(row, sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // In wasm builds these run under wasm-bindgen's test runner (`./build.sh test`), where
    // the SIMD kernels and packing are the code under test.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The layouts every build can run, and AMX tiles where this machine has them (natively
    /// on x86-64 Linux; the build machines do).
    fn testable_layouts() -> Vec<Layout> {
        let mut layouts = vec![Layout::WidePairs, Layout::SplitQuads];
        if amx::available() {
            layouts.push(Layout::AmxTiles);
        } else {
            eprintln!("no AMX tiles here: the AMX kernel is not tested");
        }
        layouts
    }

    fn lcg(seed: &mut u32) -> u32 {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *seed >> 8
    }

    #[test]
    fn matmul_equals_the_integer_definition() {
        let mut seed = 3;
        // Depths around the 16-deep block, odd widths (a padded column), row counts around
        // the 4-row block, and the extreme values of both types.
        for (rows, k, n) in [
            (1, 1, 1),
            (3, 15, 5),
            (4, 16, 2),
            (5, 17, 3),
            (11, 384, 7),
            (9, 40, 1),
            // AMX: whole 16-row groups and 32 × 32 blocks stored in place, partial row groups,
            // an odd group count, columns past the last whole block, depth not a 64 multiple.
            (64, 128, 64),
            (48, 64, 96),
            (33, 384, 40),
            (17, 100, 33),
            (250, 64, 16),
        ] {
            let mut x: Vec<u8> = (0..rows * k).map(|_| lcg(&mut seed) as u8).collect();
            let mut w: Vec<i8> = (0..k * n).map(|_| lcg(&mut seed) as i8).collect();
            x[0] = 255;
            w[0] = -128;
            let zero_point = (lcg(&mut seed) % 256) as i32;
            for layout in testable_layouts() {
                let packed = PackedWeights::pack_as(&w, k, n, layout).unwrap();
                let mut out = vec![0; rows * n];
                matmul(&x, zero_point, &packed, &mut out).unwrap();
                for r in 0..rows {
                    for j in 0..n {
                        let expected: i32 = (0..k)
                            .map(|d| {
                                (i32::from(x[r * k + d]) - zero_point) * i32::from(w[d * n + j])
                            })
                            .sum();
                        let got = out[r * n + j];
                        assert_eq!(got, expected, "{layout:?} {rows}×{k}×{n} at ({r}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn seven_bit_weights_run_on_one_offset_plane() {
        let mut seed = 5;
        // Every column spans ≤ 128 values, each in its own window: [-64, 63], [-63, 64],
        // [-128, -1] (offset 128), [0, 127], and a narrow one.
        let windows: [(i16, i16); 5] = [(-64, 63), (-63, 64), (-128, -1), (0, 127), (-3, 5)];
        for (rows, k, n) in [(1, 1, 5), (3, 15, 5), (11, 384, 23), (5, 17, 20), (2, 8, 1)] {
            let mut x: Vec<u8> = (0..rows * k).map(|_| lcg(&mut seed) as u8).collect();
            x[0] = 255;
            let w: Vec<i8> = (0..k * n)
                .map(|i| {
                    let (lo, hi) = windows[(i % n) % windows.len()];
                    // The window's ends first, so every column spans its whole window.
                    let v = match i / n {
                        0 => lo,
                        1 => hi,
                        _ => lo + (lcg(&mut seed) % (hi - lo + 1) as u32) as i16,
                    };
                    v as i8
                })
                .collect();
            assert!(
                column_offsets(&w, n).is_some(),
                "{rows}×{k}×{n}: 7-bit columns"
            );
            let zero_point = (lcg(&mut seed) % 256) as i32;
            let packed = PackedWeights::pack_as(&w, k, n, Layout::OffsetQuads).unwrap();
            let mut out = vec![0; rows * n];
            matmul(&x, zero_point, &packed, &mut out).unwrap();
            let expected = reference_matmul(&x, zero_point, &w, rows, k, n);
            assert_eq!(out, expected, "OffsetQuads {rows}×{k}×{n}");
        }
    }

    #[test]
    fn eight_bit_columns_are_not_offset() {
        // One column spanning 129 values is enough to need the split planes.
        let w: Vec<i8> = vec![-64, 0, 64, 0];
        assert_eq!(column_offsets(&w, 2), None);
        let err = PackedWeights::pack_as(&w, 2, 2, Layout::OffsetQuads).unwrap_err();
        assert_eq!(
            err.to_string(),
            "int8 weights: a column spans more than 7 bits"
        );
        assert_eq!(column_offsets(&[-64, 0, 63, 0], 2), Some(vec![64, 0]));
        let wide = PackedWeights::pack(&w, 2, 2).unwrap();
        let narrow = PackedWeights::pack(&[-64, 0, 63, 0], 2, 2).unwrap();
        assert!(!wide.seven_bit_columns() && narrow.seven_bit_columns());
        if amx::available() {
            assert_eq!(
                (wide.layout, narrow.layout),
                (Layout::AmxTiles, Layout::AmxTiles)
            );
        } else if quad_kernels_in_simd() {
            assert_eq!(
                (wide.layout, narrow.layout),
                (Layout::SplitQuads, Layout::OffsetQuads)
            );
        } else {
            assert_eq!(
                (wide.layout, narrow.layout),
                (Layout::WidePairs, Layout::WidePairs)
            );
        }
    }

    fn reference_matmul(
        x: &[u8],
        zero_point: i32,
        w: &[i8],
        rows: usize,
        k: usize,
        n: usize,
    ) -> Vec<i32> {
        (0..rows * n)
            .map(|i| {
                let (r, j) = (i / n, i % n);
                (0..k)
                    .map(|d| (i32::from(x[r * k + d]) - zero_point) * i32::from(w[d * n + j]))
                    .sum()
            })
            .collect()
    }

    /// Every weight where [`Layout::place`] (the definition) puts it, zero everywhere else,
    /// for shapes around every layout's block edges.
    #[test]
    fn packing_places_every_weight_as_defined() {
        let mut seed = 7;
        // Around the tiles (4 × 4, 16 × 2) and wasm SIMD's 16-column steps (full steps, a
        // scalar tail, depths it leaves to the scalar code); even columns shifted to
        // [-128, -29] in the second round of those, so offsets reach 128.
        let shapes = [
            (1, 1),
            (3, 5),
            (4, 4),
            (15, 2),
            (16, 3),
            (17, 9),
            (33, 17),
            (64, 8),
        ];
        let simd_shapes = [(4, 16), (8, 48), (12, 35), (13, 32), (64, 32)];
        let cases = shapes.into_iter().chain(simd_shapes).chain(simd_shapes);
        for (case, (k, n)) in cases.enumerate() {
            let shifted = case >= shapes.len() + simd_shapes.len();
            let w: Vec<i8> = (0..k * n)
                .map(|i| {
                    let v = (lcg(&mut seed) % 100) as i8 - 50;
                    if shifted && (i % n) % 2 == 0 {
                        v - 78
                    } else {
                        v
                    }
                })
                .collect();
            let layouts = [Layout::OffsetQuads, Layout::AmxTiles];
            for layout in [Layout::WidePairs, Layout::SplitQuads]
                .into_iter()
                .chain(layouts)
            {
                let packed = PackedWeights::pack_as(&w, k, n, layout).unwrap();
                let offsets = column_offsets(&w, n).unwrap();
                let mut expected = vec![0i8; layout.packed_len(packed.k_padded, n)];
                for depth in 0..k {
                    for j in 0..n {
                        let v = w[depth * n + j];
                        let at = layout.place(packed.k_padded, depth, j);
                        match layout {
                            Layout::WidePairs => expected[at] = v,
                            Layout::SplitQuads => {
                                expected[at] = v & 0x7f;
                                expected[at + QUAD * QUAD] = i8::from(v < 0);
                            }
                            Layout::OffsetQuads => expected[at] = (i16::from(v) + offsets[j]) as i8,
                            Layout::AmxTiles => expected[at] = v,
                        }
                    }
                }
                assert_eq!(packed.blocks, expected, "{layout:?} {k} × {n}");
                let sums: Vec<i32> = (0..n)
                    .map(|j| (0..k).map(|d| i32::from(w[d * n + j])).sum())
                    .collect();
                assert_eq!(packed.column_sums, sums, "{layout:?} {k} × {n}");
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let packed = PackedWeights::pack(&[1, 2, 3, 4, 5, 6], 3, 2).unwrap();
        let err = matmul(&[1, 2, 3, 4], 0, &packed, &mut [0; 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "int8 matmul: 4 activations and 2 outputs for 3 × 2 weights"
        );
        let err = PackedWeights::pack(&[1, 2, 3], 2, 2).unwrap_err();
        assert_eq!(err.to_string(), "int8 weights: 3 values for a 2 × 2 matrix");
    }
}
