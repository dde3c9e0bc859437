//! Group-wise low-bit values: how the weights a browser downloads are stored (graph
//! constants, token-embedding rows), expanded to f32 once, at load.
//!
//! Each group of `group` consecutive values keeps its own f16 scale and minimum,
//! `x ≈ code · scale + min`, with codes of 4 or 8 bits: a few outliers then cost precision in
//! their own group only (one scale per tensor or per column would spread them over
//! thousands of values). A group is stored as `scale (f16) | min (f16) | codes`, 4-bit codes
//! two per byte, low nibble first, so one token-embedding row decodes from its own bytes.

use half::f16;

use super::f16::widen_f16_into;

/// A group-wise code: `bits` (4 or 8) per value, `group` values per scale and minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupCode {
    pub bits: u32,
    pub group: usize,
}

/// Bytes of a group's scale and minimum.
const HEADER: usize = 4;

impl GroupCode {
    /// A code of `bits` (4 or 8) per value over groups of `group` (even, at least 2).
    pub fn new(bits: u32, group: usize) -> Result<Self, String> {
        if !matches!(bits, 4 | 8) || group < 2 || !group.is_multiple_of(2) || group > 4096 {
            return Err(format!(
                "unsupported group code: {bits} bits per value in groups of {group} \
                 (4 or 8 bits, even groups of 2 to 4096 values)"
            ));
        }
        Ok(Self { bits, group })
    }

    /// Bytes of one encoded group.
    pub fn group_bytes(self) -> usize {
        HEADER + self.group * self.bits as usize / 8
    }

    /// Bytes of `len` values, or `None` if `len` is not a whole number of groups.
    pub fn encoded_len(self, len: usize) -> Option<usize> {
        len.is_multiple_of(self.group)
            .then(|| len / self.group * self.group_bytes())
    }

    /// The largest code.
    fn top(self) -> f32 {
        ((1u32 << self.bits) - 1) as f32
    }

    /// `xs` encoded (`xs.len()` must be a multiple of `group`). Each group's range is mapped
    /// onto the codes after rounding its scale and minimum to f16, so that decoding with the
    /// stored values is what the rounding assumed.
    pub fn encode(self, xs: &[f32]) -> Vec<u8> {
        debug_assert!(xs.len().is_multiple_of(self.group));
        let mut out = Vec::with_capacity(self.encoded_len(xs.len()).unwrap_or(0));
        for group in xs.chunks_exact(self.group) {
            let (min, max) = group
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            let min = f16::from_f32(min);
            let scale = f16::from_f32((max - min.to_f32()) / self.top());
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend_from_slice(&min.to_le_bytes());
            let (scale, min) = (scale.to_f32(), min.to_f32());
            let code = |x: f32| -> u8 {
                if scale > 0.0 {
                    ((x - min) / scale).round().clamp(0.0, self.top()) as u8
                } else {
                    0
                }
            };
            match self.bits {
                4 => out.extend(group.chunks_exact(2).map(|p| code(p[0]) | code(p[1]) << 4)),
                _ => out.extend(group.iter().map(|&x| code(x))),
            }
        }
        out
    }

    /// Decodes `bytes` into `xs` (as many values as `xs` holds); `Err` if the lengths differ.
    /// In chunks of groups, one call each: V8 optimizes a wasm function for its next calls,
    /// never in the middle of one.
    pub fn decode_into(self, bytes: &[u8], xs: &mut [f32]) -> Result<(), String> {
        if self.encoded_len(xs.len()) != Some(bytes.len()) {
            return Err(format!(
                "{} bytes do not hold {} values of {} bits in groups of {}",
                bytes.len(),
                xs.len(),
                self.bits,
                self.group
            ));
        }
        const GROUPS_PER_CALL: usize = 512;
        for (xs, bytes) in xs
            .chunks_mut(GROUPS_PER_CALL * self.group)
            .zip(bytes.chunks(GROUPS_PER_CALL * self.group_bytes()))
        {
            self.decode_chunk(bytes, xs);
        }
        Ok(())
    }

    #[inline(never)]
    fn decode_chunk(self, bytes: &[u8], xs: &mut [f32]) {
        let mut header = [0f32; 2];
        for (xs, group) in xs
            .chunks_exact_mut(self.group)
            .zip(bytes.chunks_exact(self.group_bytes()))
        {
            widen_f16_into(&mut header, &group[..HEADER]);
            let [scale, min] = header;
            let codes = &group[HEADER..];
            match self.bits {
                4 => {
                    for (pair, &byte) in xs.chunks_exact_mut(2).zip(codes) {
                        pair[0] = f32::from(byte & 0x0f) * scale + min;
                        pair[1] = f32::from(byte >> 4) * scale + min;
                    }
                }
                _ => {
                    for (x, &code) in xs.iter_mut().zip(codes) {
                        *x = f32::from(code) * scale + min;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 0.2)
            .collect()
    }

    #[test]
    fn every_value_comes_back_within_half_a_step_of_its_group() {
        let xs = values(256);
        for (bits, group) in [(4, 32), (4, 2), (8, 64)] {
            let code = GroupCode::new(bits, group).unwrap();
            let bytes = code.encode(&xs);
            assert_eq!(Some(bytes.len()), code.encoded_len(xs.len()));
            let mut back = vec![0f32; xs.len()];
            code.decode_into(&bytes, &mut back).unwrap();
            for (g, (xs, back)) in xs.chunks(group).zip(back.chunks(group)).enumerate() {
                let range = xs.iter().fold(f32::MIN, |m, &x| m.max(x))
                    - xs.iter().fold(f32::MAX, |m, &x| m.min(x));
                // Half a step, plus what rounding the scale and minimum to f16 moves.
                let step = range / code.top();
                for (&x, &y) in xs.iter().zip(back) {
                    assert!(
                        (x - y).abs() <= step * 0.51 + 2e-4,
                        "{bits}/{group}, group {g}: {x} → {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn constant_groups_and_layout() {
        // A constant group: scale 0, every code 0, the value itself as minimum.
        let code = GroupCode::new(4, 4).unwrap();
        let bytes = code.encode(&[0.5; 4]);
        assert_eq!(bytes.len(), 4 + 2);
        assert_eq!(&bytes[..2], &f16::ZERO.to_le_bytes());
        assert_eq!(&bytes[2..4], &f16::from_f32(0.5).to_le_bytes());
        // Two values per byte, low nibble first: 0 and 15 of the range [0, 15].
        let bytes = code.encode(&[0.0, 15.0, 15.0, 0.0]);
        assert_eq!(&bytes[4..], &[0xf0, 0x0f]);
        let mut back = [0f32; 4];
        code.decode_into(&bytes, &mut back).unwrap();
        assert_eq!(back, [0.0, 15.0, 15.0, 0.0]);
    }

    #[test]
    fn bad_codes_and_lengths_are_refused() {
        assert!(GroupCode::new(3, 32).is_err());
        assert!(GroupCode::new(4, 31).is_err());
        let code = GroupCode::new(8, 4).unwrap();
        assert_eq!(code.encoded_len(6), None);
        let err = code.decode_into(&[0; 7], &mut [0f32; 4]).unwrap_err();
        assert_eq!(err, "7 bytes do not hold 4 values of 8 bits in groups of 4");
    }
}
