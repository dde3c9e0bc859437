//! How a bundle stores f32 values — graph constants and token-embedding rows — apart from
//! how they are computed with: a browser downloads compact codes and expands them once, at
//! load, into whatever the plan runs (f32, or int8 re-quantized per column). (A query
//! bundle's 8-bit linear weights skip this: the graph holds their int8 compute codes.)
//!
//! Written as text in descriptors and graph headers: `f32`, `f16`, or `q<bits>/<group>` for
//! [`GroupCode`]s (e.g. `q4/32`: 4 bits per value, a scale and minimum per 32 values).

use std::fmt;
use std::str::FromStr;

use half::f16;

use crate::kernels::f16::widen_f16_into;
use crate::kernels::groups::GroupCode;

/// One way of storing a run of f32 values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueEncoding {
    /// As is, little-endian.
    F32,
    /// Rounded to f16 (exact for values that are f16 already, e.g. f16 checkpoints).
    F16,
    /// Group-wise low-bit codes ([`GroupCode`]).
    Groups(GroupCode),
}

impl ValueEncoding {
    /// Bytes of `len` values, or `None` where this encoding cannot hold exactly `len`
    /// (group codes need whole groups).
    pub fn encoded_len(self, len: usize) -> Option<usize> {
        match self {
            ValueEncoding::F32 => len.checked_mul(4),
            ValueEncoding::F16 => len.checked_mul(2),
            ValueEncoding::Groups(code) => code.encoded_len(len),
        }
    }

    /// `xs` encoded; `None` if the length does not fit ([`ValueEncoding::encoded_len`]).
    pub fn encode(self, xs: &[f32]) -> Option<Vec<u8>> {
        self.encoded_len(xs.len())?;
        Some(match self {
            ValueEncoding::F32 => xs.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ValueEncoding::F16 => xs
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect(),
            ValueEncoding::Groups(code) => code.encode(xs),
        })
    }

    /// Decodes `bytes` into `xs`; `Err` (a reason) if they do not hold exactly `xs.len()`
    /// values.
    pub fn decode_into(self, bytes: &[u8], xs: &mut [f32]) -> Result<(), String> {
        if self.encoded_len(xs.len()) != Some(bytes.len()) {
            return Err(format!(
                "{} bytes do not hold {} values stored as {self}",
                bytes.len(),
                xs.len()
            ));
        }
        match self {
            ValueEncoding::F32 => {
                for (x, b) in xs.iter_mut().zip(bytes.chunks_exact(4)) {
                    *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            ValueEncoding::F16 => widen_f16_into(xs, bytes),
            ValueEncoding::Groups(code) => code.decode_into(bytes, xs)?,
        }
        Ok(())
    }

    /// `xs` as they read back after being stored this way (for checks of what was written).
    pub fn round_trip(self, xs: &[f32]) -> Option<Vec<f32>> {
        let bytes = self.encode(xs)?;
        let mut back = vec![0f32; xs.len()];
        self.decode_into(&bytes, &mut back).ok()?;
        Some(back)
    }
}

impl fmt::Display for ValueEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueEncoding::F32 => f.write_str("f32"),
            ValueEncoding::F16 => f.write_str("f16"),
            ValueEncoding::Groups(code) => write!(f, "q{}/{}", code.bits, code.group),
        }
    }
}

impl FromStr for ValueEncoding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "f32" => return Ok(ValueEncoding::F32),
            "f16" => return Ok(ValueEncoding::F16),
            _ => {}
        }
        let parsed = text
            .strip_prefix('q')
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(bits, group)| Some((bits.parse().ok()?, group.parse().ok()?)));
        match parsed {
            Some((bits, group)) => GroupCode::new(bits, group).map(ValueEncoding::Groups),
            None => Err(format!(
                "unknown value encoding {text:?} (expected f32, f16, or q<bits>/<group> such as q4/32)"
            )),
        }
    }
}

impl serde::Serialize for ValueEncoding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ValueEncoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_read_back_as_written() {
        for text in ["f32", "f16", "q4/32", "q8/64"] {
            let encoding: ValueEncoding = text.parse().unwrap();
            assert_eq!(encoding.to_string(), text);
            let json = serde_json::to_string(&encoding).unwrap();
            assert_eq!(
                serde_json::from_str::<ValueEncoding>(&json).unwrap(),
                encoding
            );
        }
        let xs: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) / 8.0).collect();
        assert_eq!(ValueEncoding::F32.round_trip(&xs).unwrap(), xs);
        // Multiples of 1/8 in this range are f16 values: exact.
        assert_eq!(ValueEncoding::F16.round_trip(&xs).unwrap(), xs);
        let q8 = "q8/32"
            .parse::<ValueEncoding>()
            .unwrap()
            .round_trip(&xs)
            .unwrap();
        assert!(xs.iter().zip(&q8).all(|(a, b)| (a - b).abs() < 0.01));
    }

    #[test]
    fn bad_encodings_and_lengths_are_named() {
        assert_eq!(
            "q5".parse::<ValueEncoding>().unwrap_err(),
            "unknown value encoding \"q5\" (expected f32, f16, or q<bits>/<group> such as q4/32)"
        );
        assert!("q3/32".parse::<ValueEncoding>().is_err());
        let q4: ValueEncoding = "q4/32".parse().unwrap();
        assert_eq!(q4.encode(&[0.0; 33]), None);
        assert_eq!(
            q4.decode_into(&[0; 19], &mut [0.0; 32]).unwrap_err(),
            "19 bytes do not hold 32 values stored as q4/32"
        );
    }
}
