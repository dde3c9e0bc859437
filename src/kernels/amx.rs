//! Intel AMX kernels' shared set-up and the int8 one ([`super::int8_matmul`]'s AMX layout),
//! natively on x86-64.
//!
//! AMX's `tdpbusd` multiplies u8 activations by i8 weights — `MatMulInteger`'s own
//! operands, with no offset trick — 16 × 16 × 64 at a time. tract's AMX kernel computes one
//! 16 × 16 output tile per call; this one keeps a 32 × 32 block of sums in four tiles, so
//! each 64-deep step loads two activation and two weight tiles for four multiplies
//! (several times tract's rate: BENCHMARKS.md). It starts the sums at `−zero_point · Σ w`
//! (the zero point costs nothing) and stores finished tiles straight into the output.
//! Integer sums are exact, so it gives the same bits as every other layout.
//!
//! Linux only: a process must ask the kernel for AMX's tile state (`arch_prctl`) before its
//! first tile instruction; [`available`] does, once.

/// Depth of one `tdpbusd` step: a weight tile holds 64 depths × 16 columns.
pub const DEPTH: usize = 64;
/// Output columns of one tile (16 i32 sums per 64-byte tile row).
pub const COLUMNS: usize = 16;
/// Depths per weight-tile row: a tile row holds, per column, 4 consecutive depths.
pub const QUAD: usize = 4;
/// Bytes of one weight tile (16 rows of 64 bytes).
const TILE_BYTES: usize = DEPTH * COLUMNS;

/// Where weight `(depth, j)` goes when a `[k, n]` matrix (depth zero-padded to `kp`, a
/// multiple of [`DEPTH`]) is packed for [`matmul`]: per 16-column block, per 64-deep step, one
/// tile whose row `r` holds depths `4r..4r + 4` of each of the 16 columns (AMX's layout for
/// `tdpbusd`'s second operand).
pub fn place(kp: usize, depth: usize, j: usize) -> usize {
    let steps = kp / DEPTH;
    (j / COLUMNS * steps + depth / DEPTH) * TILE_BYTES
        + (depth % DEPTH) / QUAD * (QUAD * COLUMNS)
        + (j % COLUMNS) * QUAD
        + depth % QUAD
}

/// Packed bytes for `n` columns of depth `kp`: column blocks padded to an even count (the
/// kernel takes them two at a time).
pub fn packed_len(kp: usize, n: usize) -> usize {
    n.div_ceil(2 * COLUMNS) * 2 * COLUMNS * kp
}

/// Copies the first `rows` rows of a stored 32-column `block` of sums into `out` (`n` columns
/// wide) at `(first_row, first_column)`, clipped to `out`'s columns: where a block is not
/// whole, the kernels store it to a scratch block first and keep only what belongs to `out`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn copy_block_rows<T: Copy>(
    block: &[T],
    rows: usize,
    out: &mut [T],
    n: usize,
    (first_row, first_column): (usize, usize),
) {
    let width = 2 * COLUMNS;
    let columns = (n - first_column).min(width);
    for (r, sums) in block.chunks_exact(width).take(rows).enumerate() {
        out[(first_row + r) * n + first_column..][..columns].copy_from_slice(&sums[..columns]);
    }
}

/// Whether this process can run AMX int8 tiles: the CPU has them and Linux granted the tile
/// state. Asked once; later calls read the answer.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| imp::cpu_has(imp::AMX_INT8) && tile_state_granted())
}

/// Whether this process can run AMX bf16 tiles ([`super::bf16_amx`]).
pub fn bf16_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| imp::cpu_has(imp::AMX_BF16) && tile_state_granted())
}

/// Whether Linux granted this process AMX's tile state (asked once, for every kernel).
fn tile_state_granted() -> bool {
    static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *GRANTED.get_or_init(imp::request_tile_state)
}

/// `out[r, j] = Σ_d (x[r, d] − zero_point) · w[d, j]` for the `[k, n]` weights packed in
/// `blocks` (see [`place`]) with depth padded to `kp`, and `column_sums[j] = Σ_d w[d, j]`.
pub fn matmul(
    x: &[u8],
    zero_point: i32,
    blocks: &[i8],
    column_sums: &[i32],
    (k, kp, n): (usize, usize, usize),
    out: &mut [i32],
) -> tract_core::internal::TractResult<()> {
    use tract_core::internal::*;
    ensure!(
        available(),
        "int8 matmul: this CPU or OS does not run AMX tiles"
    );
    ensure!(
        k > 0
            && kp.is_multiple_of(DEPTH)
            && kp >= k
            && blocks.len() == packed_len(kp, n)
            && column_sums.len() == n
            && x.len().is_multiple_of(k)
            && out.len() == x.len() / k * n,
        "int8 matmul: AMX operands do not fit a {k} × {n} matrix"
    );
    // SAFETY: AMX is available (checked above) and the shapes were checked.
    unsafe { imp::matmul(x, zero_point, blocks, column_sums, (k, kp, n), out) };
    Ok(())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use imp::configure_tiles;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::{COLUMNS, DEPTH, TILE_BYTES};

    /// Activation rows per tile.
    const TILE_ROWS: usize = 16;
    use std::arch::asm;

    /// `ldtilecfg`'s operand: palette 1, then per tile its bytes per row and rows.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    /// CPUID leaf 7 EDX: AMX-BF16 (bit 22), AMX-TILE (24), AMX-INT8 (25).
    pub(super) const AMX_BF16: u32 = 1 << 22;
    pub(super) const AMX_INT8: u32 = 1 << 25;
    const AMX_TILE: u32 = 1 << 24;

    /// Whether the CPU has AMX tiles and the `unit` (AMX_INT8 or AMX_BF16).
    pub(super) fn cpu_has(unit: u32) -> bool {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        leaf7.edx & (AMX_TILE | unit) == AMX_TILE | unit
    }

    /// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, without which the first tile
    /// instruction faults.
    pub(super) fn request_tile_state() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call, with integer arguments only.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }

    /// Loads the tile configuration every dotfind AMX kernel uses: tiles 0–7, each 16 rows of
    /// 64 bytes.
    ///
    /// # Safety
    /// AMX must be available (the CPU has it and Linux granted the tile state).
    pub(crate) unsafe fn configure_tiles() {
        let config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
            rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        asm!("ldtilecfg [{}]", in(reg) &config, options(nostack));
    }

    /// Stores sum tiles 0–3 as the 32 × 32 block at `at`, rows `stride` bytes apart.
    ///
    /// # Safety
    /// AMX tiles configured, and 32 rows of 128 bytes, `stride` apart, writable at `at`.
    #[inline(always)]
    unsafe fn store_sums(at: *mut u8, stride: usize) {
        asm!(
            "tilestored [{c00} + {stride}*1], tmm0",
            "tilestored [{c01} + {stride}*1], tmm1",
            "tilestored [{c10} + {stride}*1], tmm2",
            "tilestored [{c11} + {stride}*1], tmm3",
            c00 = in(reg) at,
            c01 = in(reg) at.add(64),
            c10 = in(reg) at.add(TILE_ROWS * stride),
            c11 = in(reg) at.add(TILE_ROWS * stride + 64),
            stride = in(reg) stride,
            options(nostack),
        );
    }

    /// Tiles 0–3: the 2 × 2 sums (16 × 16 i32 each); 4–5: two 16-row activation tiles;
    /// 6–7: two weight tiles. All 16 rows of 64 bytes.
    ///
    /// One function (over 80 lines) on purpose: the tile registers carry state from one
    /// `asm!` block to the next (sums preloaded, accumulated, stored), which only holds while
    /// the blocks run in this order with nothing in between that touches the tiles.
    ///
    /// # Safety
    /// AMX must be available and the shapes those [`super::matmul`] checks.
    pub(super) unsafe fn matmul(
        x: &[u8],
        zero_point: i32,
        blocks: &[i8],
        column_sums: &[i32],
        (k, kp, n): (usize, usize, usize),
        out: &mut [i32],
    ) {
        let rows = x.len() / k;
        let groups = rows.div_ceil(TILE_ROWS);
        let steps = kp / DEPTH;
        // Activation tiles read 16 rows × 64 bytes: straight from `x` when its rows are whole
        // steps deep, else (and for the last, partial row group) from a zero-padded copy.
        let direct_groups = if k == kp { rows / TILE_ROWS } else { 0 };
        let mut padded = vec![0u8; (groups - direct_groups) * TILE_ROWS * kp];
        for (dst, src) in padded
            .chunks_exact_mut(kp)
            .zip(x[direct_groups * TILE_ROWS * k..].chunks_exact(k))
        {
            dst[..k].copy_from_slice(src);
        }
        let group_start = |g: usize| -> (*const u8, usize) {
            if g < direct_groups {
                (x[g * TILE_ROWS * k..].as_ptr(), k)
            } else {
                (padded[(g - direct_groups) * TILE_ROWS * kp..].as_ptr(), kp)
            }
        };
        // Every sum starts at −zero_point · Σ w: loaded into the sum tiles with row stride 0.
        let mut start = vec![0i32; blocks.len() / kp];
        for (s, &sum) in start.iter_mut().zip(column_sums) {
            *s = sum.wrapping_mul(zero_point).wrapping_neg();
        }
        let mut block = [0i32; 2 * TILE_ROWS * 2 * COLUMNS];
        // SAFETY (every asm block): tile loads read 16 rows of 64 bytes inside `x`, `padded`,
        // `blocks` or `start` (strides and offsets from the checked shapes); tile stores
        // write 16 rows of 64 bytes inside `out` (only where all 32 × 32 sums belong to it)
        // or `block`.
        configure_tiles();
        for pair in 0..blocks.len() / (2 * COLUMNS * kp) {
            let weights0 = blocks.as_ptr().add(2 * pair * steps * TILE_BYTES);
            let weights1 = weights0.add(steps * TILE_BYTES);
            let first_column = pair * 2 * COLUMNS;
            let starts = start.as_ptr().add(first_column);
            for g in (0..groups).step_by(2) {
                let both = g + 1 < groups;
                let (a0, stride0) = group_start(g);
                let (a1, stride1) = group_start(if both { g + 1 } else { g });
                asm!(
                    "tileloadd tmm0, [{s0} + {zero}*1]",
                    "tileloadd tmm1, [{s1} + {zero}*1]",
                    "tileloadd tmm2, [{s0} + {zero}*1]",
                    "tileloadd tmm3, [{s1} + {zero}*1]",
                    s0 = in(reg) starts,
                    s1 = in(reg) starts.add(COLUMNS),
                    zero = in(reg) 0usize,
                    options(nostack),
                );
                for step in 0..steps {
                    let (w0, w1) = (
                        weights0.add(step * TILE_BYTES),
                        weights1.add(step * TILE_BYTES),
                    );
                    let (a0, a1) = (a0.add(step * DEPTH), a1.add(step * DEPTH));
                    if both {
                        asm!(
                            "tileloadd tmm4, [{a0} + {stride0}*1]",
                            "tileloadd tmm6, [{w0} + {row}*1]",
                            "tileloadd tmm7, [{w1} + {row}*1]",
                            "tdpbusd tmm0, tmm4, tmm6",
                            "tileloadd tmm5, [{a1} + {stride1}*1]",
                            "tdpbusd tmm1, tmm4, tmm7",
                            "tdpbusd tmm2, tmm5, tmm6",
                            "tdpbusd tmm3, tmm5, tmm7",
                            a0 = in(reg) a0,
                            a1 = in(reg) a1,
                            stride0 = in(reg) stride0,
                            stride1 = in(reg) stride1,
                            w0 = in(reg) w0,
                            w1 = in(reg) w1,
                            row = in(reg) DEPTH,
                            options(nostack),
                        );
                    } else {
                        asm!(
                            "tileloadd tmm4, [{a0} + {stride0}*1]",
                            "tileloadd tmm6, [{w0} + {row}*1]",
                            "tileloadd tmm7, [{w1} + {row}*1]",
                            "tdpbusd tmm0, tmm4, tmm6",
                            "tdpbusd tmm1, tmm4, tmm7",
                            a0 = in(reg) a0,
                            stride0 = in(reg) stride0,
                            w0 = in(reg) w0,
                            w1 = in(reg) w1,
                            row = in(reg) DEPTH,
                            options(nostack),
                        );
                    }
                }
                let first_row = g * TILE_ROWS;
                let block_rows = (rows - first_row).min(2 * TILE_ROWS);
                if block_rows == 2 * TILE_ROWS && first_column + 2 * COLUMNS <= n {
                    let at = out.as_mut_ptr().add(first_row * n + first_column);
                    store_sums(at.cast(), n * 4);
                } else {
                    store_sums(block.as_mut_ptr().cast(), 2 * COLUMNS * 4);
                    super::copy_block_rows(&block, block_rows, out, n, (first_row, first_column));
                }
            }
        }
        asm!("tilerelease", options(nostack));
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub(super) const AMX_BF16: u32 = 0;
    pub(super) const AMX_INT8: u32 = 0;

    pub(super) fn cpu_has(_: u32) -> bool {
        false
    }

    pub(super) fn request_tile_state() -> bool {
        false
    }

    /// Never called: [`super::matmul`] checks [`super::available`] first.
    pub(super) unsafe fn matmul(
        _: &[u8],
        _: i32,
        _: &[i8],
        _: &[i32],
        _: (usize, usize, usize),
        _: &mut [i32],
    ) {
    }
}
