//! An int8 linear layer (u8 activations × i8 weights → f32) with dotfind's own kernel.
//!
//! In the browser, int8 query encoding spent ~60 % of its time in tract's wasm int8 matmul
//! kernel (profiled in Chromium), whose relaxed-SIMD dot product needs 7-bit operands and so
//! splits every weight vector in two. Widening both sides to i16 and using the exact
//! `i32x4.dot_i16x8_s` instead does 8 multiply-adds per instruction with no split, in every
//! SIMD build (plain and relaxed). The weights are packed once, at load, two output columns
//! per 16-deep block, so a query streams each weight from memory once.
//!
//! With relaxed SIMD, a matrix whose every column spans at most 128 values (7-bit weights, as
//! onnxruntime's `reduce_range` quantization writes them) needs no split: each column is
//! offset into `[0, 127]` at load and one relaxed dot does 16 multiply-adds, half the
//! instructions of the split planes.
//!
//! Integer accumulation is exact, so the result equals ONNX `MatMulInteger` (and tract's
//! evaluation of it) bit for bit, whichever layout runs.

use std::sync::Arc;

use tract_core::internal::*;

use crate::int8_amx;

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
    /// per 64-deep step, one `tdpbusd` weight tile ([`crate::int8_amx`]).
    AmxTiles,
}

impl Layout {
    /// `k` zero-padded to the block depth.
    fn padded_depth(self, k: usize) -> usize {
        match self {
            Layout::WidePairs => k.div_ceil(DEPTH) * DEPTH,
            Layout::SplitQuads | Layout::OffsetQuads => k.div_ceil(QUAD) * QUAD,
            Layout::AmxTiles => k.div_ceil(int8_amx::DEPTH) * int8_amx::DEPTH,
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
            Layout::AmxTiles => int8_amx::packed_len(kp, n),
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
            Layout::AmxTiles => int8_amx::place(kp, depth, j),
        }
    }

    /// The layout this build's SIMD (or this CPU's AMX) runs fastest, for weights whose
    /// columns do or do not all fit 7 bits.
    pub fn for_this_target(seven_bit_columns: bool) -> Self {
        if int8_amx::available() {
            Layout::AmxTiles
        } else if !cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
            Layout::WidePairs
        } else if seven_bit_columns {
            Layout::OffsetQuads
        } else {
            Layout::SplitQuads
        }
    }
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

/// Per column of a row-major `[k, n]` matrix: the sum of its weights, and `−min` if the
/// column spans at most 128 values (which moves it into `[0, 127]`). One pass over the rows,
/// columns side by side, which compilers vectorize.
struct ColumnStats {
    sums: Vec<i32>,
    /// `None` if some column spans more than 128 values.
    offsets: Option<Vec<i16>>,
}

impl ColumnStats {
    fn of(weights: &[i8], n: usize) -> Self {
        let mut min = vec![i8::MAX; n];
        let mut max = vec![i8::MIN; n];
        let mut sums = vec![0i32; n];
        let first = stats_simd(weights, n, &mut min, &mut max, &mut sums);
        for row in weights.chunks_exact(n) {
            let columns = row.iter().zip(&mut min).zip(&mut max).zip(&mut sums);
            for (((&w, lo), hi), sum) in columns.skip(first) {
                *lo = (*lo).min(w);
                *hi = (*hi).max(w);
                *sum += i32::from(w);
            }
        }
        let offsets = min
            .iter()
            .zip(&max)
            .map(|(&lo, &hi)| {
                let offset = -i16::from(lo);
                (i16::from(hi) + offset <= 127).then_some(offset)
            })
            .collect();
        Self { sums, offsets }
    }
}

/// [`ColumnStats`] of columns `[0, 16·⌊n/16⌋)` with wasm SIMD, 16 columns per instruction
/// (start-up scans every int8 weight while V8 still runs it baseline-compiled); returns the
/// first column left to the scalar loop.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn stats_simd(weights: &[i8], n: usize, min: &mut [i8], max: &mut [i8], sums: &mut [i32]) -> usize {
    use core::arch::wasm32::*;
    const LANES: usize = 16;
    let wide = n / LANES * LANES;
    let chunks = wide / LANES;
    let mut lows = vec![i8x16_splat(i8::MAX); chunks];
    let mut highs = vec![i8x16_splat(i8::MIN); chunks];
    let mut totals = vec![i32x4_splat(0); 4 * chunks];
    for row in weights.chunks_exact(n) {
        for (c, ((lo, hi), total)) in lows
            .iter_mut()
            .zip(&mut highs)
            .zip(totals.chunks_exact_mut(4))
            .enumerate()
        {
            // SAFETY: 16 bytes read from a 16-byte slice.
            let w = unsafe { v128_load(row[c * LANES..][..LANES].as_ptr().cast()) };
            *lo = i8x16_min(*lo, w);
            *hi = i8x16_max(*hi, w);
            let (w_low, w_high) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
            total[0] = i32x4_add(total[0], i32x4_extend_low_i16x8(w_low));
            total[1] = i32x4_add(total[1], i32x4_extend_high_i16x8(w_low));
            total[2] = i32x4_add(total[2], i32x4_extend_low_i16x8(w_high));
            total[3] = i32x4_add(total[3], i32x4_extend_high_i16x8(w_high));
        }
    }
    for (c, (lo, hi)) in lows.iter().zip(&highs).enumerate() {
        // SAFETY: 16 i8 lanes written into 16-element slices.
        unsafe {
            v128_store(min[c * LANES..][..LANES].as_mut_ptr().cast(), *lo);
            v128_store(max[c * LANES..][..LANES].as_mut_ptr().cast(), *hi);
        }
    }
    for (quad, total) in sums[..wide].chunks_exact_mut(4).zip(&totals) {
        // SAFETY: 4 i32 lanes written into a 4-element slice (wasm is little-endian, lane i
        // is element i).
        unsafe { v128_store(quad.as_mut_ptr().cast(), *total) }
    }
    wide
}

/// Without wasm SIMD every column goes through the scalar loop.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn stats_simd(_: &[i8], _: usize, _: &mut [i8], _: &mut [i8], _: &mut [i32]) -> usize {
    0
}

/// Per column `j` of a row-major `[k, n]` matrix, `−min_j`, which moves the column into
/// `[0, 127]`; `None` if some column spans more than 128 values.
#[cfg(test)]
fn column_offsets(weights: &[i8], n: usize) -> Option<Vec<i16>> {
    ColumnStats::of(weights, n).offsets
}

/// A `[k, n]` i8 weight matrix packed for [`matmul`] in one [`Layout`], plus every column's
/// sum, for the activations' zero point.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PackedWeights {
    k: usize,
    n: usize,
    layout: Layout,
    /// `k` zero-padded to the layout's block depth.
    k_padded: usize,
    /// WidePairs: per column pair, per 16-deep block, 16 weights of each column.
    /// SplitQuads: per column group of 4, per 4-deep block, the 16-byte lo plane (4 weights
    /// of each column) then the hi plane; groups padded to an even count.
    /// OffsetQuads: SplitQuads' lo planes only, of offset weights; groups padded to 4.
    blocks: Vec<i8>,
    column_sums: Vec<i32>,
    /// OffsetQuads: each column's offset (`−min_j`); empty otherwise.
    column_offsets: Vec<i32>,
    /// Whether every column spans ≤ 128 values (what the relaxed build runs fastest).
    seven_bit_columns: bool,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` matrix for this build's kernel.
    pub fn pack(weights: &[i8], k: usize, n: usize) -> TractResult<Self> {
        Self::pack_with(weights, k, n, Layout::for_this_target)
    }

    /// Packs a row-major `[k, n]` matrix in `layout`.
    pub fn pack_as(weights: &[i8], k: usize, n: usize, layout: Layout) -> TractResult<Self> {
        Self::pack_with(weights, k, n, |_| layout)
    }

    /// Packs in the layout `choose` picks from whether every column fits 7 bits: the
    /// columns are scanned once, at start-up, for both the choice and the offsets.
    fn pack_with(
        weights: &[i8],
        k: usize,
        n: usize,
        choose: impl FnOnce(bool) -> Layout,
    ) -> TractResult<Self> {
        ensure!(
            k > 0 && n > 0 && weights.len() == k * n,
            "int8 weights: {} values for a {k} × {n} matrix",
            weights.len()
        );
        let ColumnStats {
            sums: column_sums,
            offsets,
        } = ColumnStats::of(weights, n);
        let seven_bit_columns = offsets.is_some();
        let layout = choose(seven_bit_columns);
        let offsets = match (layout, offsets) {
            (Layout::OffsetQuads, Some(offsets)) => offsets,
            (Layout::OffsetQuads, None) => bail!("int8 weights: a column spans more than 7 bits"),
            (Layout::WidePairs | Layout::SplitQuads | Layout::AmxTiles, _) => vec![],
        };
        let k_padded = layout.padded_depth(k);
        let mut blocks = vec![0i8; layout.packed_len(k_padded, n)];
        match layout {
            Layout::WidePairs => pack_tiles::<DEPTH, COLS>(weights, k, n, 0, |depth, j, tile| {
                blocks[layout.place(k_padded, depth, j)..][..DEPTH * COLS].copy_from_slice(tile);
            }),
            // lo = w & 0x7f, hi = (w < 0): both in [0, 127], w = lo − 128·hi.
            Layout::SplitQuads => {
                let rest = pack_quads_simd(weights, k, n, layout, k_padded, &[], &mut blocks);
                pack_tiles::<QUAD, QUAD>(weights, k, n, rest, |depth, j, tile| {
                    let at = layout.place(k_padded, depth, j);
                    let (lo, hi) = blocks[at..][..2 * QUAD * QUAD].split_at_mut(QUAD * QUAD);
                    for ((lo, hi), &w) in lo.iter_mut().zip(hi).zip(tile) {
                        *lo = w & 0x7f;
                        *hi = i8::from(w < 0);
                    }
                })
            }
            // In [0, 127] by the offsets' definition; padding stays 0.
            Layout::OffsetQuads => {
                let rest = pack_quads_simd(weights, k, n, layout, k_padded, &offsets, &mut blocks);
                pack_tiles::<QUAD, QUAD>(weights, k, n, rest, |depth, j, tile| {
                    let at = layout.place(k_padded, depth, j);
                    let plane = &mut blocks[at..][..QUAD * QUAD];
                    for (c, (column, out)) in tile
                        .chunks_exact(QUAD)
                        .zip(plane.chunks_exact_mut(QUAD))
                        .enumerate()
                    {
                        let Some(&offset) = offsets.get(j + c) else {
                            break;
                        };
                        let depths = (k - depth).min(QUAD);
                        for (out, &w) in out.iter_mut().zip(column).take(depths) {
                            *out = (i16::from(w) + offset) as i8;
                        }
                    }
                })
            }
            // Each 4-deep, 16-wide tile is one row of an AMX weight tile.
            Layout::AmxTiles => pack_tiles::<{ int8_amx::QUAD }, { int8_amx::COLUMNS }>(
                weights,
                k,
                n,
                0,
                |depth, j, tile| {
                    blocks[layout.place(k_padded, depth, j)..][..tile.len()].copy_from_slice(tile);
                },
            ),
        }
        Ok(Self {
            k,
            n,
            layout,
            k_padded,
            blocks,
            column_sums,
            column_offsets: offsets.into_iter().map(i32::from).collect(),
            seven_bit_columns,
        })
    }

    /// Whether every column spans ≤ 128 values (7-bit weights, one relaxed dot per 16).
    pub fn seven_bit_columns(&self) -> bool {
        self.seven_bit_columns
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// Hands `place` every `D`-deep, `C`-wide tile of a row-major `[k, n]` matrix from column
/// `first_column` on (a multiple of `C`), transposed (`tile[c·D + d]` = weight
/// `(depth + d, j + c)`, zero past the matrix's edges), with the `(depth, j)` of its first
/// weight. Every layout stores a tile's weights this way, column by
/// column, so packing is one tile copy each, not one scattered write per weight: packing runs
/// at start-up, in the browser while V8 still runs most code baseline-compiled.
fn pack_tiles<const D: usize, const C: usize>(
    weights: &[i8],
    k: usize,
    n: usize,
    first_column: usize,
    mut place: impl FnMut(usize, usize, &[i8]),
) {
    let mut tile = vec![0i8; D * C];
    for depth in (0..k).step_by(D) {
        let rows = &weights[depth * n..(depth + D).min(k) * n];
        for j in (first_column..n).step_by(C) {
            if rows.len() == D * n && j + C <= n {
                for (d, row) in rows.chunks_exact(n).enumerate() {
                    for (c, &w) in row[j..j + C].iter().enumerate() {
                        tile[c * D + d] = w;
                    }
                }
            } else {
                // An edge tile: what lies outside the matrix is zero.
                tile.fill(0);
                for (d, row) in rows.chunks_exact(n).enumerate() {
                    for (c, &w) in row[j..n.min(j + C)].iter().enumerate() {
                        tile[c * D + d] = w;
                    }
                }
            }
            place(depth, j, &tile);
        }
    }
}

/// SplitQuads and OffsetQuads (`offsets`: OffsetQuads' per-column offsets, empty for
/// SplitQuads), with wasm SIMD: columns `[0, 16·⌊n/16⌋)` of a matrix whose depth is a
/// multiple of 4, four tiles (16 columns × 4 rows) per step, transposed by byte and lane
/// shuffles. Returns the first column left to [`pack_tiles`]. Start-up packs every int8
/// weight this way, while V8 still runs it baseline-compiled, where a few wide instructions
/// cost far less than a scalar loop.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn pack_quads_simd(
    weights: &[i8],
    k: usize,
    n: usize,
    layout: Layout,
    k_padded: usize,
    offsets: &[i16],
    blocks: &mut [i8],
) -> usize {
    use core::arch::wasm32::*;
    const LANES: usize = 16;
    if !k.is_multiple_of(QUAD) {
        return 0;
    }
    let wide = n / LANES * LANES;
    // Per 4-column group, its columns' offsets laid out as its tile is: 4 of each.
    let tile_offsets: Vec<v128> = (0..wide / QUAD)
        .map(|g| {
            let mut tile = [0i8; QUAD * QUAD];
            if !offsets.is_empty() {
                for (c, four) in tile.chunks_exact_mut(QUAD).enumerate() {
                    // Offsets lie in [-127, 128]; i8 wrapping addition of one gives the exact
                    // offset weight, which is in [0, 127].
                    four.fill(offsets[QUAD * g + c] as i8);
                }
            }
            // SAFETY: 16 bytes read from a 16-byte array.
            unsafe { v128_load(tile.as_ptr().cast()) }
        })
        .collect();
    let (seven_bits, one) = (i8x16_splat(0x7f), i8x16_splat(1));
    let store = |blocks: &mut [i8], at: usize, v: v128| {
        // SAFETY: 16 bytes written into a 16-byte slice.
        unsafe { v128_store(blocks[at..][..LANES].as_mut_ptr().cast(), v) }
    };
    for depth in (0..k).step_by(QUAD) {
        let rows: [&[i8]; QUAD] = std::array::from_fn(|d| &weights[(depth + d) * n..][..n]);
        for j in (0..wide).step_by(LANES) {
            // SAFETY: j + 16 ≤ wide ≤ n, the length of every row.
            let [r0, r1, r2, r3] =
                rows.map(|row| unsafe { v128_load(row[j..][..LANES].as_ptr().cast()) });
            // Bytes of rows 0 and 1 interleaved (then 2 and 3), then pairs of those: each 16
            // bytes are one tile, column by column, 4 depths each.
            let low01 =
                i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(r0, r1);
            let high01 =
                i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(
                    r0, r1,
                );
            let low23 =
                i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(r2, r3);
            let high23 =
                i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(
                    r2, r3,
                );
            let tiles = [
                i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(low01, low23),
                i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(low01, low23),
                i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(high01, high23),
                i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(high01, high23),
            ];
            for (t, tile) in tiles.into_iter().enumerate() {
                let group = j / QUAD + t;
                let at = layout.place(k_padded, depth, QUAD * group);
                match layout {
                    Layout::OffsetQuads => store(blocks, at, i8x16_add(tile, tile_offsets[group])),
                    Layout::SplitQuads => {
                        store(blocks, at, v128_and(tile, seven_bits));
                        let negative = i8x16_lt(tile, i8x16_splat(0));
                        store(blocks, at + QUAD * QUAD, v128_and(negative, one));
                    }
                    Layout::WidePairs | Layout::AmxTiles => {
                        unreachable!("only the quad layouts are packed in quads")
                    }
                }
            }
        }
    }
    wide
}

/// Without wasm SIMD every tile goes through [`pack_tiles`].
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn pack_quads_simd(
    _weights: &[i8],
    _k: usize,
    _n: usize,
    _layout: Layout,
    _k_padded: usize,
    _offsets: &[i16],
    _blocks: &mut [i8],
) -> usize {
    0
}

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
            return int8_amx::matmul(x, zero_point, &w.blocks, &w.column_sums, shape, out);
        }
    }
    Ok(())
}

fn matmul_wide_pairs(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations widened to i16 (u8 as is); Σ x·w − zp·Σ w.
    let block_bytes = COLS * w.k_padded;
    let finish = |_row: usize, j: usize, sum: i32| sum - zero_point * w.column_sums[j];
    matmul_blocks::<_, ROWS, COLS>(x, w, out, block_bytes, i16::from, micro_kernel, finish);
}

fn matmul_split_quads(x: &[u8], zero_point: i32, w: &PackedWeights, out: &mut [i32]) {
    // Activations offset to i8 (x − 128); Σ (x − zp)·w = Σ (x − 128)·w + (128 − zp)·Σ w.
    let block_bytes = GROUPS * Layout::group_bytes(w.k_padded);
    let kernel = |rows: &[i8], blocks: &[i8], kp: usize| {
        split_micro_kernel(rows, blocks, kp).map(|groups| flatten_groups(&groups))
    };
    let correction = 128 - zero_point;
    let finish = |_row: usize, j: usize, sum: i32| sum + correction * w.column_sums[j];
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
        offset_micro_kernel(rows, blocks, kp).map(|groups| flatten_groups(&groups))
    };
    let row_sums: Vec<i32> = x
        .chunks_exact(w.k)
        .map(|row| row.iter().map(|&v| i32::from(v) - 128).sum())
        .collect();
    let correction = 128 - zero_point;
    let finish = |row: usize, j: usize, sum: i32| {
        sum - w.column_offsets[j] * row_sums[row] + correction * w.column_sums[j]
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
/// block's weights stay in L1 while every row block reads them), and
/// `out[r, j] = finish(r, j, kernel sum)` (the layout's zero-point and offset terms).
fn matmul_blocks<A: Copy + Default, const R: usize, const C: usize>(
    x: &[u8],
    w: &PackedWeights,
    out: &mut [i32],
    block_bytes: usize,
    convert: impl Fn(u8) -> A,
    kernel: impl Fn(&[A], &[i8], usize) -> [[i32; C]; R],
    finish: impl Fn(usize, usize, i32) -> i32,
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
            for (r, row_sums) in sums.iter().enumerate() {
                let row = row_block * R + r;
                if row >= rows {
                    break;
                }
                for (c, &sum) in row_sums.iter().enumerate() {
                    let j = column_block * C + c;
                    if j < n {
                        out[row * n + j] = finish(row, j, sum);
                    }
                }
            }
        }
    }
}

/// `sums[r][g][c] = Σ_d rows[r·kp + d] · w_{g,c}[d]`, from the lo/hi planes.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn split_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
    use core::arch::wasm32::*;
    let group_bytes = Layout::group_bytes(kp);
    assert!(rows.len() == SPLIT_ROWS * kp && blocks.len() == GROUPS * group_bytes);
    let mut lo = [[i32x4_splat(0); GROUPS]; SPLIT_ROWS];
    let mut hi = [[i32x4_splat(0); GROUPS]; SPLIT_ROWS];
    for block in 0..kp / QUAD {
        // SAFETY: reads 4 bytes of each row at `block·4 < kp` and 32 bytes of each group at
        // `block·32 < group_bytes` (bounds asserted above); no alignment requirement.
        unsafe {
            let a = [0, 1]
                .map(|r| v128_load32_splat(rows.as_ptr().add(r * kp + block * QUAD) as *const u32));
            for g in 0..GROUPS {
                let plane = blocks
                    .as_ptr()
                    .add(g * group_bytes + block * 2 * QUAD * QUAD);
                let (w_lo, w_hi) = (
                    v128_load(plane as *const v128),
                    v128_load(plane.add(16) as *const v128),
                );
                for r in 0..SPLIT_ROWS {
                    lo[r][g] = i32x4_relaxed_dot_i8x16_i7x16_add(a[r], w_lo, lo[r][g]);
                    hi[r][g] = i32x4_relaxed_dot_i8x16_i7x16_add(a[r], w_hi, hi[r][g]);
                }
            }
        }
    }
    let mut sums = [[[0i32; QUAD]; GROUPS]; SPLIT_ROWS];
    for r in 0..SPLIT_ROWS {
        for g in 0..GROUPS {
            let v = i32x4_sub(lo[r][g], i32x4_shl(hi[r][g], 7));
            sums[r][g] = [
                i32x4_extract_lane::<0>(v),
                i32x4_extract_lane::<1>(v),
                i32x4_extract_lane::<2>(v),
                i32x4_extract_lane::<3>(v),
            ];
        }
    }
    sums
}

/// `sums[r][g][c] = Σ_d rows[r·kp + d] · w_{g,c}[d]`, from the single offset plane.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn offset_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] {
    use core::arch::wasm32::*;
    let plane_bytes = Layout::plane_bytes(kp);
    assert!(rows.len() == SPLIT_ROWS * kp && blocks.len() == OFFSET_GROUPS * plane_bytes);
    let mut acc = [[i32x4_splat(0); OFFSET_GROUPS]; SPLIT_ROWS];
    for block in 0..kp / QUAD {
        // SAFETY: reads 4 bytes of each row at `block·4 < kp` and 16 bytes of each group at
        // `block·16 < plane_bytes` (bounds asserted above); no alignment requirement.
        unsafe {
            let a = [0, 1]
                .map(|r| v128_load32_splat(rows.as_ptr().add(r * kp + block * QUAD) as *const u32));
            let planes: [v128; OFFSET_GROUPS] = core::array::from_fn(|g| {
                v128_load(blocks.as_ptr().add(g * plane_bytes + block * QUAD * QUAD) as *const v128)
            });
            for (acc_r, &a_r) in acc.iter_mut().zip(&a) {
                for (acc_rg, &w) in acc_r.iter_mut().zip(&planes) {
                    *acc_rg = i32x4_relaxed_dot_i8x16_i7x16_add(a_r, w, *acc_rg);
                }
            }
        }
    }
    acc.map(|row| {
        row.map(|v| {
            [
                i32x4_extract_lane::<0>(v),
                i32x4_extract_lane::<1>(v),
                i32x4_extract_lane::<2>(v),
                i32x4_extract_lane::<3>(v),
            ]
        })
    })
}

/// Portable twin of the relaxed-SIMD offset micro-kernel (same plane, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn offset_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; OFFSET_GROUPS]; SPLIT_ROWS] {
    portable_quad_kernel(rows, blocks, kp, |[sum]| sum)
}

/// Portable twin of the relaxed-SIMD micro-kernel (same planes, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn split_micro_kernel(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
) -> [[[i32; QUAD]; GROUPS]; SPLIT_ROWS] {
    portable_quad_kernel(rows, blocks, kp, |[lo, hi]| lo - 128 * hi)
}

/// The quad layouts' sums in plain integer code: per row and 4-column group, each 4-deep
/// block's `P` planes dotted with the row, combined by `combine` (`lo − 128·hi`, or the one
/// plane).
#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn portable_quad_kernel<const G: usize, const P: usize>(
    rows: &[i8],
    blocks: &[i8],
    kp: usize,
    combine: impl Fn([i32; P]) -> i32,
) -> [[[i32; QUAD]; G]; SPLIT_ROWS] {
    let block_bytes = P * QUAD * QUAD;
    let group_bytes = (kp / QUAD) * block_bytes;
    let mut sums = [[[0i32; QUAD]; G]; SPLIT_ROWS];
    for (r, sums_r) in sums.iter_mut().enumerate() {
        for (g, sums_g) in sums_r.iter_mut().enumerate() {
            for block in 0..kp / QUAD {
                let a = &rows[r * kp + block * QUAD..][..QUAD];
                let planes = &blocks[g * group_bytes + block * block_bytes..][..block_bytes];
                for (c, sum) in sums_g.iter_mut().enumerate() {
                    *sum += combine(std::array::from_fn(|p| {
                        a.iter()
                            .zip(&planes[p * QUAD * QUAD + c * QUAD..][..QUAD])
                            .map(|(&x, &y)| i32::from(x) * i32::from(y))
                            .sum()
                    }));
                }
            }
        }
    }
    sums
}

/// `sums[r][c] = Σ_d rows[r·kp + d] · w_c[d]` for ROWS rows and COLS packed columns.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn micro_kernel(rows: &[i16], pair_blocks: &[i8], kp: usize) -> [[i32; COLS]; ROWS] {
    use core::arch::wasm32::*;
    assert!(rows.len() == ROWS * kp && pair_blocks.len() == COLS * kp && kp.is_multiple_of(DEPTH));
    let mut acc = [[i32x4_splat(0); COLS]; ROWS];
    for block in 0..kp / DEPTH {
        // SAFETY: every load reads 16 bytes inside `pair_blocks` or `rows` (bounds asserted
        // above: `block · DEPTH + 16 ≤ kp`); v128_load has no alignment requirement.
        unsafe {
            let w_ptr = pair_blocks.as_ptr().add(block * COLS * DEPTH);
            let w0 = v128_load(w_ptr as *const v128);
            let w1 = v128_load(w_ptr.add(DEPTH) as *const v128);
            let w = [
                (i16x8_extend_low_i8x16(w0), i16x8_extend_high_i8x16(w0)),
                (i16x8_extend_low_i8x16(w1), i16x8_extend_high_i8x16(w1)),
            ];
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_ptr = rows.as_ptr().add(r * kp + block * DEPTH);
                let lo = v128_load(a_ptr as *const v128);
                let hi = v128_load(a_ptr.add(8) as *const v128);
                for (acc_rc, (w_lo, w_hi)) in acc_r.iter_mut().zip(w) {
                    let both = i32x4_add(i32x4_dot_i16x8(lo, w_lo), i32x4_dot_i16x8(hi, w_hi));
                    *acc_rc = i32x4_add(*acc_rc, both);
                }
            }
        }
    }
    acc.map(|row| {
        row.map(|v| {
            i32x4_extract_lane::<0>(v)
                + i32x4_extract_lane::<1>(v)
                + i32x4_extract_lane::<2>(v)
                + i32x4_extract_lane::<3>(v)
        })
    })
}

/// Portable twin of the wasm SIMD micro-kernel (same blocks, same sums).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn micro_kernel(rows: &[i16], pair_blocks: &[i8], kp: usize) -> [[i32; COLS]; ROWS] {
    let mut sums = [[0i32; COLS]; ROWS];
    for (block, w) in pair_blocks.chunks_exact(COLS * DEPTH).enumerate() {
        for (r, sums_r) in sums.iter_mut().enumerate() {
            let a = &rows[r * kp + block * DEPTH..][..DEPTH];
            for (c, sum) in sums_r.iter_mut().enumerate() {
                let w_c = &w[c * DEPTH..][..DEPTH];
                *sum += a
                    .iter()
                    .zip(w_c)
                    .map(|(&x, &y)| i32::from(x) * i32::from(y))
                    .sum::<i32>();
            }
        }
    }
    sums
}

/// `y = f32(Σ (x − zero_point) · w) · scale + bias`: ONNX DynamicQuantizeLinear's output
/// through MatMulInteger → Cast → Mul(scale) → Add(bias), as one op. Inputs: `x` (u8,
/// `[.., k]`), its zero point (u8 scalar), `scale` and `bias` (f32, one per output column).
/// With `weight_scales`, the `scale` input is the activations' (a scalar) and each column's
/// is `scale · weight_scales[n]`: the `Mul` that `quantize_dynamic` wires for it, folded in.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Int8Linear {
    pub weights: Arc<PackedWeights>,
    pub weight_scales: Option<Arc<WeightScales>>,
}

/// Per-output-column weight scales, compared and hashed bit for bit (as tract compares
/// constants), so ops holding them stay `Eq` and `Hash`.
#[derive(Clone, Debug)]
pub struct WeightScales(pub Vec<f32>);

impl PartialEq for WeightScales {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .map(|s| s.to_bits())
            .eq(other.0.iter().map(|s| s.to_bits()))
    }
}

impl Eq for WeightScales {}

impl std::hash::Hash for WeightScales {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.iter().for_each(|s| s.to_bits().hash(state));
    }
}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "Int8Linear (dotfind)".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Linear {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, zero_point, scale, bias) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let xs = x.try_as_plain_ram()?.as_slice::<u8>()?;
        let zero_point = zero_point.cast_to_scalar::<i32>()?;
        let column_scales: Vec<f32>;
        let scale = match &self.weight_scales {
            Some(weight_scales) => {
                let activations = scale.cast_to_scalar::<f32>()?;
                column_scales = weight_scales.0.iter().map(|&w| activations * w).collect();
                &column_scales[..]
            }
            None => scale.try_as_plain_ram()?.as_slice::<f32>()?,
        };
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let n = self.weights.n;
        ensure!(
            scale.len() == n && bias.len() == n,
            "int8 linear: {} scales and {} biases for {n} outputs",
            scale.len(),
            bias.len()
        );
        let mut shape: TVec<usize> = x.shape().into();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        let mut acc = vec![0i32; shape.iter().product()];
        matmul(xs, zero_point, &self.weights, &mut acc)?;
        // SAFETY: `dequantize_rows` writes every element or fails (and `out` is dropped).
        let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), &shape)? };
        let mut ram = out.try_as_plain_ram_mut()?;
        crate::int8_graph::dequantize_rows(&acc, scale, bias, ram.as_slice_mut::<f32>()?)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        if let Some(last) = shape.last_mut() {
            *last = self.weights.n.into();
        }
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
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
        if int8_amx::available() {
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
        if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
            assert_eq!(
                (wide.layout, narrow.layout),
                (Layout::SplitQuads, Layout::OffsetQuads)
            );
        } else if int8_amx::available() {
            assert_eq!(
                (wide.layout, narrow.layout),
                (Layout::AmxTiles, Layout::AmxTiles)
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
