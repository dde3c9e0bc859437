//! Packing a weight matrix into its [`Layout`], once, at load: in the browser this runs
//! while V8 still runs most code baseline-compiled, so it copies whole tiles (and, with
//! wasm SIMD, transposes them with shuffles) rather than scattering single weights.

use super::*;

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
pub(super) fn column_offsets(weights: &[i8], n: usize) -> Option<Vec<i16>> {
    ColumnStats::of(weights, n).offsets
}

/// A `[k, n]` i8 weight matrix packed for [`matmul`] in one [`Layout`], plus every column's
/// sum, for the activations' zero point.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PackedWeights {
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) layout: Layout,
    /// `k` zero-padded to the layout's block depth.
    pub(super) k_padded: usize,
    /// WidePairs: per column pair, per 16-deep block, 16 weights of each column.
    /// SplitQuads: per column group of 4, per 4-deep block, the 16-byte lo plane (4 weights
    /// of each column) then the hi plane; groups padded to an even count.
    /// OffsetQuads: SplitQuads' lo planes only, of offset weights; groups padded to 4.
    pub(super) blocks: Vec<i8>,
    pub(super) column_sums: Vec<i32>,
    /// OffsetQuads: each column's offset (`−min_j`); empty otherwise.
    pub(super) column_offsets: Vec<i32>,
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
            Layout::AmxTiles => {
                pack_tiles::<{ amx::QUAD }, { amx::COLUMNS }>(weights, k, n, 0, |depth, j, tile| {
                    blocks[layout.place(k_padded, depth, j)..][..tile.len()].copy_from_slice(tile);
                })
            }
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

    /// Each column's sum of weights: `Σ (x − z)·w = Σ x·w − z·Σ w`, for zero points applied
    /// after the product.
    pub fn column_sums(&self) -> &[i32] {
        &self.column_sums
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
