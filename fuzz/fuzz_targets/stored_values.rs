//! Stored values as compact weights and token-embedding chunks hold them (f32, f16, group
//! codes of any declared width): the first three bytes choose the encoding and the count.
#![no_main]
use dotfind::kernels::groups::GroupCode;
use dotfind::model::storage::ValueEncoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(([kind, bits, group], bytes)) = data.split_first_chunk::<3>() else {
        return;
    };
    let encoding = match kind % 3 {
        0 => ValueEncoding::F32,
        1 => ValueEncoding::F16,
        _ => match GroupCode::new(u32::from(*bits), usize::from(*group)) {
            Ok(code) => ValueEncoding::Groups(code),
            Err(_) => return,
        },
    };
    // As many values as the bytes could hold, and one more (a length that must be refused).
    for len in [
        bytes.len() * 2,
        bytes.len() / 2,
        bytes.len() / 4,
        1 + bytes.len() / 4,
    ] {
        let mut xs = vec![0f32; len.min(1 << 16)];
        if encoding.decode_into(bytes, &mut xs).is_ok() {
            assert_eq!(encoding.encoded_len(xs.len()), Some(bytes.len()));
        }
    }
});
