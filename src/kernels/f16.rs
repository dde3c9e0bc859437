//! f16 → f32 widening for weights stored as f16 ([`crate::model::graph`]'s constants).

/// `halves` (little-endian f16 bits) widened into `xs`, in chunks, one call each: V8
/// optimizes a wasm function for its next calls, never in the middle of one, so a single
/// call over millions of values would run entirely in its baseline tier.
pub fn widen_f16_into(xs: &mut [f32], halves: &[u8]) {
    const CHUNK: usize = 1 << 14;
    for (xs, halves) in xs.chunks_mut(CHUNK).zip(halves.chunks(2 * CHUNK)) {
        widen_f16_chunk(xs, halves);
    }
}

/// `halves` (little-endian f16 bits) widened into `xs`.
#[inline(never)]
fn widen_f16_chunk(xs: &mut [f32], halves: &[u8]) {
    for (x, half) in xs.iter_mut().zip(halves.chunks_exact(2)) {
        *x = widen_f16(u16::from_le_bytes([half[0], half[1]]));
    }
}

/// f16 bits → the same value as f32, bit for bit what `half` gives (NaNs made quiet, as it
/// makes them), but branch-free so that the loop over a weight matrix vectorizes: in wasm,
/// `half` converts one value at a time in software, which dominated loading f16 weights.
fn widen_f16(bits: u16) -> f32 {
    const INF_OR_NAN: u32 = 0x7c00 << 13;
    let h = u32::from(bits);
    let sign = (h & 0x8000) << 16;
    let magnitude = (h & 0x7fff) << 13;
    // As f32 bits, `magnitude` is the value scaled by 2^-112 (normals and subnormals alike);
    // multiplying by 2^112 (f32 bits 0x7780_0000) rescales it exactly.
    let finite = (f32::from_bits(magnitude) * f32::from_bits(0x7780_0000)).to_bits();
    let quiet = if magnitude > INF_OR_NAN {
        0x0040_0000
    } else {
        0
    };
    let special = 0x7f80_0000 | magnitude | quiet;
    f32::from_bits(
        sign | if magnitude >= INF_OR_NAN {
            special
        } else {
            finite
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn f16_widening_is_halfs_for_every_bit_pattern() {
        for bits in 0..=u16::MAX {
            assert_eq!(
                widen_f16(bits).to_bits(),
                f16::from_bits(bits).to_f32().to_bits(),
                "{bits:#06x}"
            );
        }
    }
}
