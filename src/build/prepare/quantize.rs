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
}
