//! The constants of a compiled graph: where their bytes are, how they are stored
//! ([`ValueEncoding`]), and how they come back as tensors.

use serde::{Deserialize, Serialize};
use tract_core::internal::*;
use tract_core::ops::konst::Const;

use super::ops::{self, dt_text, plain_datum_type};
use crate::model::storage::ValueEncoding;

/// f32 constants smaller than this stay f32 (biases, norms: nothing to gain).
const MIN_F16_STORED: usize = 4096;

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
        dt == f32::datum_type(),
        "{dt:?} constant stored as {encoding}"
    );
    ensure!(
        encoding.encoded_len(count) == Some(bytes.len()),
        "constant of shape {:?} stored as {encoding} has {} bytes",
        record.shape,
        bytes.len()
    );
    // Matrices stored column by column ([`stored_order`]) are decoded as their transpose.
    let matrix = as_matrix(&record.shape, encoding);
    let shape: TVec<usize> = match matrix {
        Some([inputs, outputs]) => tvec![outputs, inputs],
        None => record.shape.iter().copied().collect(),
    };
    // SAFETY: f32 has no invalid bit pattern, and the decoders write every element (the byte
    // count was checked against the element count above) or fail.
    let mut tensor = unsafe { Tensor::uninitialized_dt(dt, &shape)? };
    {
        let mut values = tensor.try_as_plain_ram_mut()?;
        encoding
            .decode_into(bytes, values.as_slice_mut::<f32>()?)
            .map_err(|e| format_err!("{e}"))?;
    }
    if matrix.is_some() {
        tensor = tensor.permute_axes(&[1, 0])?.into_shape(&record.shape)?;
    }
    Ok(tensor)
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
        };
        let op = Const::new(constant_tensor(&record, &bytes)?.into_arc_tensor())?;
        node.outputs[0].fact = op.output_facts(&[])?.remove(0);
        node.op = Box::new(op);
    }
    Ok(rounded)
}
