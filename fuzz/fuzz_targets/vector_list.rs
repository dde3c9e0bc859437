//! Vector lists (`vectors/NNNNN.bin`): the directory parsed, then the codes and every row
//! read back, as whole files and as the byte ranges a search fetches bring them.
#![no_main]
use dotfind::index::{ListDirectory, ListLayout, VectorEncoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 36 {
        return;
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    // What the index would say: the file's own header (its checks still run).
    let want = ListLayout {
        encoding: match data[6] {
            0 => VectorEncoding::F32,
            1 => VectorEncoding::F16,
            _ => VectorEncoding::Int8,
        },
        dims: (u32_at(8) as usize).min(4096),
        count: (u32_at(12) as usize).min(1 << 20),
        code_bytes: u16::from_le_bytes([data[16], data[17]]) as usize,
    };
    let Ok(directory) = ListDirectory::from_bytes("vectors/00000.bin", data, want) else {
        return;
    };
    let l = directory.layout;
    if data.len() >= l.codes_end() {
        if let Ok(codes) = directory.codes(
            "vectors/00000.bin",
            &data[l.directory_len()..l.codes_end()],
            256,
        ) {
            assert_eq!(codes.alphas.len(), l.count);
        }
    }
    if data.len() >= l.file_len() && l.count > 0 {
        let _ = directory.rows(
            "vectors/00000.bin",
            0..l.count,
            &data[l.rows_bytes(0..l.count)],
        );
        let _ = directory.rows(
            "vectors/00000.bin",
            l.count - 1..l.count,
            &data[l.rows_bytes(l.count - 1..l.count)],
        );
    }
});
