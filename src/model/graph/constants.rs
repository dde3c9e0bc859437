//! The constants of a compiled graph: where their bytes are, how they are stored
//! ([`ValueEncoding`]), and how they come back as tensors.

use serde::{Deserialize, Serialize};
use tract_core::internal::*;
use tract_core::ops::konst::Const;

use super::ops::{self, dt_text, plain_datum_type};
use crate::kernels::groups::GroupCode;
use crate::model::storage::ValueEncoding;

/// f32 constants smaller than this stay f32 (biases, norms: nothing to gain).
const MIN_F16_STORED: usize = 4096;
/// i8 constants of at least this many bytes are stored deflated where that is smaller.
const MIN_DEFLATED: usize = 4096;

/// Where a constant's bytes are, after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConstantRecord {
    pub datum_type: String,
    pub shape: Vec<usize>,
    /// How an f32 constant's values are stored, when not as f32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as: Option<ValueEncoding>,
    pub offset: usize,
    pub bytes: usize,
    /// The bytes are a raw DEFLATE stream of the constant's (only for constants stored as
    /// they are, i.e. without `stored_as`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deflated: bool,
}

/// `bytes` of an i8 constant deflated, where that is smaller. Why i8 only: a query model's
/// int8 weight codes (bell-shaped, most near zero) deflate to 60–80 %, while f32, f16 and
/// group codes barely shrink (~4 %) and would only cost their reader time. Both zlib's
/// default strategy and Huffman codes alone are tried: weight codes have no repeats worth
/// matching, and the matches the default strategy finds cost more than they save (~0.5 bits
/// a weight on grids of 15–21 levels).
pub(super) fn deflated(dt: DatumType, bytes: &[u8]) -> TractResult<Option<Vec<u8>>> {
    if dt != i8::datum_type() || bytes.len() < MIN_DEFLATED {
        return Ok(None);
    }
    let mut best: Option<Vec<u8>> = None;
    for strategy in [zlib_rs::Strategy::Default, zlib_rs::Strategy::HuffmanOnly] {
        let out = deflate(bytes, strategy)?;
        if out.len() < best.as_ref().map_or(bytes.len(), Vec::len) {
            best = Some(out);
        }
    }
    Ok(best)
}

/// `bytes` as one raw DEFLATE stream (no zlib header), at zlib's best level.
fn deflate(bytes: &[u8], strategy: zlib_rs::Strategy) -> TractResult<Vec<u8>> {
    let mut deflater = zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
        level: 9,
        window_bits: -15,
        strategy,
        ..Default::default()
    });
    let mut out = vec![0u8; zlib_rs::compress_bound(bytes.len())];
    let status = deflater
        .compress(bytes, &mut out, zlib_rs::DeflateFlush::Finish)
        .map_err(|e| format_err!("deflating a constant: {}", e.as_str()))?;
    ensure!(
        status == zlib_rs::Status::StreamEnd,
        "deflating a constant: the stream did not end"
    );
    out.truncate(deflater.total_out() as usize);
    Ok(out)
}

/// Inflates `stream` into `out`, which it must fill exactly: a stream that ends early, runs
/// longer or is corrupt is an error, and never writes past `out`. In the browser too: handing
/// the streams to Chromium's own `DecompressionStream('deflate-raw')` was tried, and inflated
/// a query graph's streams about twice as slowly as this does (commit log, 2026-12-08).
fn inflate_into(stream: &[u8], out: &mut [u8]) -> TractResult<()> {
    let mut inflater = zlib_rs::Inflate::new(false, 15);
    let status = inflater
        .decompress(stream, out, zlib_rs::InflateFlush::Finish)
        .map_err(|e| format_err!("deflated constant: {}", e.as_str()))?;
    ensure!(
        status == zlib_rs::Status::StreamEnd
            && inflater.total_out() == out.len() as u64
            && inflater.total_in() == stream.len() as u64,
        "deflated constant does not inflate to exactly its {} bytes",
        out.len()
    );
    Ok(())
}

/// Whether an f32 constant is worth storing as f16 and loses nothing by it.
pub(super) fn f16_exact(t: &Tensor) -> bool {
    t.datum_type() == f32::datum_type()
        && t.len() >= MIN_F16_STORED
        && t.try_as_plain_ram()
            .and_then(|r| r.as_slice::<f32>())
            .is_ok_and(|v| {
                v.iter()
                    .all(|&x| f16::from_f32(x).to_f32().to_bits() == x.to_bits())
            })
}

/// How a writer stores one constant: an encoding and, where the caller holds the encoded
/// bytes already (a quantizer's own codes and grids, which encoding the values again could
/// round otherwise), those — used only if they decode to the constant's values exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageChoice {
    pub encoding: ValueEncoding,
    pub encoded: Option<Vec<u8>>,
}

impl From<ValueEncoding> for StorageChoice {
    fn from(encoding: ValueEncoding) -> Self {
        StorageChoice {
            encoding,
            encoded: None,
        }
    }
}

/// A writer's choice of how to store a constant (`None`: the default, f16 where exact).
pub type ChooseStorage<'a> = dyn Fn(&TypedNode, &Tensor) -> Option<StorageChoice> + 'a;

/// An f32 constant's values stored as `choice` says (matrices column by column for group
/// codes), or `None` where the encoding cannot hold them. Bytes given with the choice must
/// decode to exactly the constant's values.
pub(super) fn encode_constant(
    tensor: &Tensor,
    choice: &StorageChoice,
) -> TractResult<Option<Vec<u8>>> {
    if tensor.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let ordered = stored_order(tensor, choice.encoding)?;
    let ram = ordered.try_as_plain_ram()?;
    let values = ram.as_slice::<f32>()?;
    let Some(bytes) = &choice.encoded else {
        return Ok(choice.encoding.encode(values));
    };
    let mut back = vec![0f32; values.len()];
    choice
        .encoding
        .decode_into(bytes, &mut back)
        .map_err(|e| format_err!("encoded bytes given for a constant: {e}"))?;
    ensure!(
        back.iter()
            .zip(values)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the {} bytes given for a constant do not decode to its values",
        choice.encoding
    );
    Ok(Some(bytes.clone()))
}

/// Group codes run down the columns (the input axes of `x·W`: all but the last, flattened):
/// the transpose of the `[inputs, outputs]` matrix, or `None` where values stay in order.
fn as_matrix(shape: &[usize], encoding: ValueEncoding) -> Option<[usize; 2]> {
    match (encoding, shape.split_last()) {
        (ValueEncoding::Groups(_), Some((&outputs, inputs))) if !inputs.is_empty() => {
            Some([inputs.iter().product(), outputs])
        }
        _ => None,
    }
}

fn stored_order(tensor: &Tensor, encoding: ValueEncoding) -> TractResult<Tensor> {
    match as_matrix(tensor.shape(), encoding) {
        Some(matrix) => Ok(tensor.clone().into_shape(&matrix)?.permute_axes(&[1, 0])?),
        None => Ok(tensor.clone()),
    }
}

/// The constant `record` describes, from the bytes after the header.
pub(super) fn constant_tensor(record: &ConstantRecord, data: &[u8]) -> TractResult<Tensor> {
    let dt = plain_datum_type(&record.datum_type)?;
    ensure!(
        record.shape.len() <= ops::MAX_RANK,
        "rank {}",
        record.shape.len()
    );
    // Every dimension counted at least once, so no extent is absurd even in an empty tensor.
    let extent = record
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))
        .filter(|&n| n <= isize::MAX as usize);
    ensure!(
        extent.is_some(),
        "constant shape {:?} overflows",
        record.shape
    );
    let bytes = &data[record.offset..record.offset + record.bytes];
    let count = record.shape.iter().product::<usize>();
    let Some(encoding) = record.stored_as else {
        let len = count
            .checked_mul(dt.size_of())
            .context("constant's shape overflows")?;
        if record.deflated {
            // SAFETY: `dt` is a plain number type (any bytes are a valid value), and
            // `inflate_into` fills every byte of the tensor or fails (and it is dropped).
            let mut tensor = unsafe { Tensor::uninitialized_dt(dt, &record.shape)? };
            inflate_into(bytes, tensor.as_bytes_mut())?;
            return Ok(tensor);
        }
        ensure!(
            len == bytes.len(),
            "constant of shape {:?} has {} bytes",
            record.shape,
            bytes.len()
        );
        // SAFETY: `dt` is a plain number type (any bytes are a valid value), and `from_raw_dt`
        // checks that `bytes` is exactly the tensor's size. No zero fill first: a model's
        // constants are most of its bytes.
        return unsafe { Tensor::from_raw_dt(dt, &record.shape, bytes) };
    };
    ensure!(
        !record.deflated,
        "a constant stored as {encoding} is never deflated"
    );
    ensure!(
        dt == f32::datum_type(),
        "{dt:?} constant stored as {encoding}"
    );
    ensure!(
        encoding.encoded_len(count) == Some(bytes.len()),
        "constant of shape {:?} stored as {encoding} has {} bytes",
        record.shape,
        bytes.len()
    );
    // SAFETY: f32 has no invalid bit pattern, and the decoders write every element (the byte
    // count was checked against the element count above) or fail.
    let mut tensor = unsafe { Tensor::uninitialized_dt(dt, &record.shape)? };
    {
        let mut values = tensor.try_as_plain_ram_mut()?;
        let values = values.as_slice_mut::<f32>()?;
        match (encoding, as_matrix(&record.shape, encoding)) {
            (ValueEncoding::Groups(code), Some(matrix)) => {
                decode_transposed(code, bytes, matrix, values)?
            }
            _ => encoding
                .decode_into(bytes, values)
                .map_err(|e| format_err!("{e}"))?,
        }
    }
    Ok(tensor)
}

/// Decodes a matrix stored column by column ([`stored_order`]) into `out`, row-major
/// `[inputs, outputs]`, a few groups at a time: no transposed copy of the whole matrix
/// exists, even for a moment. The model's weights are decoded all at once at load, and in a
/// browser tab the peak of that load stays (wasm memory never shrinks).
fn decode_transposed(
    code: GroupCode,
    bytes: &[u8],
    [inputs, outputs]: [usize; 2],
    out: &mut [f32],
) -> TractResult<()> {
    // Whole groups at a time, about 64 KiB of values.
    let chunk_values = code.group * (1usize << 14).div_ceil(code.group);
    let mut chunk = vec![0f32; chunk_values.min(out.len())];
    let (mut at, mut byte_at) = (0usize, 0usize);
    while at < out.len() {
        let values = &mut chunk[..chunk_values.min(out.len() - at)];
        let len = code
            .encoded_len(values.len())
            .context("a matrix's values do not fill whole groups")?;
        let stored = bytes
            .get(byte_at..byte_at + len)
            .context("a matrix's codes are shorter than its values")?;
        code.decode_into(stored, values)
            .map_err(|e| format_err!("{e}"))?;
        // Stored value `t` is column `t / inputs`, row `t % inputs`.
        for (t, &v) in (at..).zip(values.iter()) {
            out[(t % inputs) * outputs + t / inputs] = v;
        }
        at += values.len();
        byte_at += len;
    }
    Ok(())
}

/// `model` with every constant replaced by what it reads back as when written with
/// `choose`: the graph a lossy [`write_with`] reads back as, to check the writing against.
pub fn round_trip_constants(
    model: &TypedModel,
    choose: &ChooseStorage<'_>,
) -> TractResult<TypedModel> {
    let mut rounded = model.clone();
    for node in rounded.nodes_mut() {
        let Some(konst) = node.op_as::<Const>() else {
            continue;
        };
        let tensor = konst.val().clone();
        let Some(choice) = choose(node, &tensor) else {
            continue;
        };
        let Some(bytes) = encode_constant(&tensor, &choice)? else {
            continue;
        };
        let encoding = choice.encoding;
        let record = ConstantRecord {
            datum_type: dt_text(tensor.datum_type())?,
            shape: tensor.shape().to_vec(),
            stored_as: Some(encoding),
            offset: 0,
            bytes: bytes.len(),
            deflated: false,
        };
        let op = Const::new(constant_tensor(&record, &bytes)?.into_arc_tensor())?;
        node.outputs[0].fact = op.output_facts(&[])?.remove(0);
        node.op = Box::new(op);
    }
    Ok(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group-coded matrices of any rank read back in place, each value near its own: groups
    /// that straddle columns, groups of sizes that are not powers of two, and matrices larger
    /// than one chunk of [`decode_transposed`].
    #[test]
    fn group_coded_matrices_read_back_in_place() {
        for (shape, group) in [
            (vec![3usize, 4, 40], 32usize),
            (vec![300, 100], 24),
            (vec![7, 2], 2),
        ] {
            let count: usize = shape.iter().product();
            // Distinct, uneven values: a transposed or shifted read-back is far off.
            let values: Vec<f32> = (0..count).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
            let tensor = tensor1(&values).into_shape(&shape).unwrap();
            let choice = StorageChoice::from(ValueEncoding::Groups(GroupCode { bits: 8, group }));
            let bytes = encode_constant(&tensor, &choice).unwrap().unwrap();
            let record = ConstantRecord {
                datum_type: dt_text(f32::datum_type()).unwrap(),
                shape: shape.clone(),
                stored_as: Some(choice.encoding),
                offset: 0,
                bytes: bytes.len(),
                deflated: false,
            };
            let back = constant_tensor(&record, &bytes).unwrap();
            assert_eq!(back.shape(), &shape[..]);
            let back = back.try_as_plain_ram().unwrap();
            let back = back.as_slice::<f32>().unwrap();
            // 8 bits over a group's range of at most 10: within one step (half a step of
            // rounding, plus the f16 rounding of each group's scale and minimum).
            let worst = values
                .iter()
                .zip(back)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 10.0 / 255.0,
                "{shape:?} q8/{group}: worst error {worst}"
            );
        }
    }

    /// A deflated constant must inflate to exactly its tensor's bytes: a stream cut short,
    /// one that would run past the tensor, and bytes that are no stream are refused.
    #[test]
    fn deflated_streams_fill_their_tensor_exactly_or_fail() {
        let raw: Vec<u8> = (0..8192u32).map(|i| (i % 13) as u8).collect();
        let stream = deflated(i8::datum_type(), &raw).unwrap().unwrap();
        assert!(stream.len() < raw.len());
        let mut out = vec![0u8; raw.len()];
        inflate_into(&stream, &mut out).unwrap();
        assert_eq!(out, raw);
        let short = "deflated constant does not inflate to exactly its 8192 bytes";
        let cut = inflate_into(&stream[..stream.len() / 2], &mut out).unwrap_err();
        assert_eq!(format!("{cut}"), short);
        let mut smaller = vec![0u8; raw.len() - 1];
        let long = inflate_into(&stream, &mut smaller).unwrap_err();
        assert_eq!(
            format!("{long}"),
            "deflated constant does not inflate to exactly its 8191 bytes"
        );
        assert!(inflate_into(&[0xff; 64], &mut out).is_err());
        // f32 and small constants are left as they are.
        assert_eq!(deflated(f32::datum_type(), &raw).unwrap(), None);
        assert_eq!(deflated(i8::datum_type(), &raw[..100]).unwrap(), None);
    }
}
