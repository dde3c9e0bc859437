//! Weight quantization at preparation time: what is stored, not what runs (activations are
//! quantized at run time, `kernels::quantize`).

/// `values` as u8 codes with one scale and zero point for the whole tensor,
/// `value ≈ (code − zero_point) · scale`, over the range `[min(x, 0), max(x, 0)]` (ONNX's
/// asymmetric u8: zero is exact). Embedding tables are stored this way.
pub fn asymmetric_u8(values: &[f32]) -> (Vec<u8>, f32, i32) {
    let min = values.iter().fold(0f32, |m, &x| m.min(x));
    let max = values.iter().fold(0f32, |m, &x| m.max(x));
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0);
    let codes = values
        .iter()
        .map(|&x| ((x / scale).round_ties_even() + zero_point).clamp(0.0, 255.0) as u8)
        .collect();
    (codes, scale, zero_point as i32)
}

/// A row-major `[k, n]` matrix as i8 codes with one symmetric scale per column,
/// `w ≈ code · scale[j]`, codes in `[−(2^(bits−1) − 1), 2^(bits−1) − 1]`: 8 bits, or 7 so that
/// every column fits the relaxed-SIMD kernel's one-plane layout.
pub fn symmetric_columns(w: &[f32], k: usize, n: usize, bits: u32) -> (Vec<i8>, Vec<f32>) {
    let limit = ((1i32 << (bits.clamp(2, 8) - 1)) - 1) as f32;
    let mut peak = vec![0f32; n];
    for row in w.chunks_exact(n).take(k) {
        for (p, &x) in peak.iter_mut().zip(row) {
            *p = p.max(x.abs());
        }
    }
    let scales: Vec<f32> = peak
        .iter()
        .map(|&p| if p > 0.0 { p / limit } else { 1.0 })
        .collect();
    let codes = w
        .chunks_exact(n)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(&x, &s)| (x / s).round_ties_even().clamp(-limit, limit) as i8)
        })
        .collect();
    (codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_keep_zero_exact_and_every_value_within_half_a_step() {
        let values = [-1.0f32, -0.25, 0.0, 0.5, 3.0];
        let (codes, scale, zp) = asymmetric_u8(&values);
        assert_eq!(codes[2] as i32, zp, "zero is a code");
        for (&x, &c) in values.iter().zip(&codes) {
            let back = (c as i32 - zp) as f32 * scale;
            assert!((back - x).abs() <= scale / 2.0 + 1e-6, "{x} → {back}");
        }
        // All positive: the range still starts at zero, and the largest value is the top code.
        let (codes, _, zp) = asymmetric_u8(&[0.5, 2.0]);
        assert_eq!((zp, codes), (0, vec![64, 255]));
    }

    #[test]
    fn columns_use_their_own_scale_and_the_bit_budget() {
        // Two columns: one spanning ±2, one ±0.5.
        let w = [2.0f32, 0.5, -1.0, -0.25, 0.5, 0.0];
        for (bits, limit) in [(8, 127), (7, 63)] {
            let (codes, scales) = symmetric_columns(&w, 3, 2, bits);
            assert_eq!(scales, vec![2.0 / limit as f32, 0.5 / limit as f32]);
            assert_eq!(codes[0] as i32, limit);
            assert_eq!(codes[1] as i32, limit);
            assert!(codes.iter().all(|&c| (c as i32).abs() <= limit));
            for (i, (&x, &c)) in w.iter().zip(&codes).enumerate() {
                let s = scales[i % 2];
                assert!((c as f32 * s - x).abs() <= s / 2.0 + 1e-7);
            }
        }
        // An all-zero column keeps a unit scale and zero codes.
        let (codes, scales) = symmetric_columns(&[0.0, 1.0], 1, 2, 8);
        assert_eq!((codes, scales), (vec![0, 127], vec![1.0, 1.0 / 127.0]));
    }
}
