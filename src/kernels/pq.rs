//! Product-quantized codes scored against a query: one table lookup per code byte. A list
//! of an index stores, per passage, `m` one-byte codes (one per slice of the dimensions);
//! the query's dot product with every centroid of every slice is computed once
//! ([`crate::index::Codebook::table`]), after which a passage's approximate score is `m`
//! additions, whatever the vector's width.

/// Centroids per slice: one code byte each.
pub const CODES_PER_SLICE: usize = 256;

/// Appends to `out` the score of each run of `m` codes in `codes` against `table` (`m`
/// runs of [`CODES_PER_SLICE`] dot products, slice by slice).
pub fn score_codes(table: &[f32], codes: &[u8], m: usize, out: &mut Vec<f32>) {
    debug_assert_eq!(table.len(), m * CODES_PER_SLICE);
    out.extend(codes.chunks_exact(m).map(|row| {
        // Four running sums: the additions of one row need not wait on each other.
        let mut acc = [0f32; 4];
        let mut slices = row.chunks_exact(4);
        let mut s = 0;
        for four in slices.by_ref() {
            for (j, &code) in four.iter().enumerate() {
                acc[j] += table[(s + j) * CODES_PER_SLICE + code as usize];
            }
            s += 4;
        }
        let tail: f32 = slices
            .remainder()
            .iter()
            .enumerate()
            .map(|(j, &code)| table[(s + j) * CODES_PER_SLICE + code as usize])
            .sum();
        acc.iter().sum::<f32>() + tail
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_sums_of_the_looked_up_entries() {
        let m = 5;
        let table: Vec<f32> = (0..m * CODES_PER_SLICE)
            .map(|i| (i % 7) as f32 - 3.0)
            .collect();
        let codes: Vec<u8> = (0..3 * m).map(|i| (i * 37 % 256) as u8).collect();
        let mut out = Vec::new();
        score_codes(&table, &codes, m, &mut out);
        for (r, got) in out.iter().enumerate() {
            let want: f32 = (0..m)
                .map(|s| table[s * CODES_PER_SLICE + codes[r * m + s] as usize])
                .sum();
            assert_eq!(*got, want);
        }
        assert_eq!(out.len(), 3);
    }
}
