//! An index's vectors into its list files: for several lists, the centroids, the codebook
//! trained on the lists' residuals and each passage's codes beside its row.

use super::partition::Partitioning;
use crate::checksum::FileEntry;
use crate::error::{Error, Result};
use crate::index::codebook::CODEBOOK_FILE;
use crate::index::lists::list_to_bytes;
use crate::index::parts::CENTROIDS_FILE;
use crate::index::{EncodedRow, ListLayout, Part, PartEntry, VectorEncoding, VectorShard};

/// What the list files are cut to.
pub struct ListsIn {
    pub dims: usize,
    pub encoding: VectorEncoding,
    pub max_file_bytes: usize,
    /// Code bytes a passage, for an index of several lists.
    pub code_bytes: usize,
}

/// Writes each list (passages in `order`, list by list) and, for several lists, the
/// centroids and the codebook, through `write(path, bytes, listed)` (`listed`: a file the
/// manifest lists, not a part). Returns the lists' part-table entries.
pub fn write_lists(
    to: &ListsIn,
    rows: &[EncodedRow],
    vectors: &[Vec<f32>],
    p: &Partitioning,
    order: &[usize],
    mut write: impl FnMut(&str, &[u8], bool) -> Result<()>,
) -> Result<Vec<PartEntry>> {
    let (dims, code_bytes) = (to.dims, to.code_bytes);
    let lists = p.centroids.len();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); lists];
    for &i in order {
        members[p.assignment[i]].push(i);
    }
    let codes = if lists > 1 {
        let stored: Vec<EncodedRow> = p
            .centroids
            .iter()
            .map(|c| EncodedRow::encode(VectorEncoding::Int8, c))
            .collect();
        write(
            CENTROIDS_FILE,
            &VectorShard::to_bytes(VectorEncoding::Int8, dims, &stored),
            true,
        )?;
        // Residuals against the centroids as readers decode them.
        let centroids: Vec<Vec<f32>> = stored
            .iter()
            .map(|r| r.decode(VectorEncoding::Int8))
            .collect();
        let (codebook, codes) =
            super::pq::quantize_lists(vectors, &members, &centroids, code_bytes);
        write(CODEBOOK_FILE, &codebook.to_bytes(), true)?;
        Some(codes)
    } else {
        None
    };
    let mut entries = Vec::with_capacity(lists);
    for (list, of_list) in members.iter().enumerate() {
        let list_rows: Vec<EncodedRow> = of_list.iter().map(|&i| rows[i].clone()).collect();
        let list_codes = codes.as_ref().map(|c| (code_bytes, &c[list]));
        let bytes = list_to_bytes(to.encoding, dims, &list_rows, list_codes);
        if bytes.len() > to.max_file_bytes {
            return Err(Error::InvalidInput(format!(
                "vector list {list} would be {} bytes, over the {}-byte file cap: use more lists",
                bytes.len(),
                to.max_file_bytes
            )));
        }
        let directory = ListLayout {
            encoding: to.encoding,
            dims,
            count: list_rows.len(),
            code_bytes: list_codes.map_or(0, |(m, _)| m),
        }
        .directory_len();
        write(&Part::List(list).path(), &bytes, false)?;
        entries.push(PartEntry {
            count: list_rows.len(),
            // The part table vouches for a list's directory, which vouches for the rest.
            file: FileEntry::of_head(&bytes, directory),
        });
    }
    Ok(entries)
}
