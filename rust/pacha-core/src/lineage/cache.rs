//! The lineage graph's on-disk snapshot, `cache/lineage.graph` in the registry: the
//! [`Graph`] columns as little-endian arrays, named by the database token they were built
//! from and checked by a BLAKE3 digest of the body.
//!
//! It is a cache: losing it, or finding it stale or damaged, costs one rebuild from the
//! database, never a wrong answer. So it is written atomically (temporary file, rename) but
//! not fsync'd, and a file that fails any check is ignored.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::Graph;
use crate::{CoreError, Result};

const MAGIC: &[u8; 8] = b"PACHALG\x01";
pub const FILE_NAME: &str = "lineage.graph";

fn corrupt() -> CoreError {
    CoreError::Corrupt {
        message: "lineage graph cache is damaged".into(),
    }
}

/// Serialise `graph` into `dir/lineage.graph`, replacing any older snapshot.
pub fn save(graph: &Graph, dir: &Path) -> Result<()> {
    let body = encode_body(graph);
    let digest = blake3::Hasher::new().update_rayon(&body).finalize();
    let mut file = tempfile::Builder::new()
        .prefix(".lineage-")
        .tempfile_in(dir)
        .map_err(|e| CoreError::io(dir, e))?;
    let token = graph.token.as_bytes();
    let mut header = Vec::with_capacity(64 + token.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(token.len() as u64).to_le_bytes());
    header.extend_from_slice(token);
    header.extend_from_slice(&(body.len() as u64).to_le_bytes());
    header.extend_from_slice(digest.as_bytes());
    file.write_all(&header)
        .and_then(|()| file.write_all(&body))
        .map_err(|e| CoreError::io(file.path(), e))?;
    file.persist(dir.join(FILE_NAME))
        .map_err(|e| CoreError::io(dir.join(FILE_NAME), e.error))?;
    Ok(())
}

/// The snapshot in `dir`, if there is one built from the database state `token` and it is
/// intact.
pub fn load(dir: &Path, token: &str) -> Option<Graph> {
    let bytes = fs::read(dir.join(FILE_NAME)).ok()?;
    let mut reader = Reader {
        bytes: &bytes,
        at: 0,
    };
    if reader.take(8).ok()? != MAGIC {
        return None;
    }
    let token_len = reader.len_u64().ok()?;
    if reader.take(token_len).ok()? != token.as_bytes() {
        return None;
    }
    let body_len = reader.len_u64().ok()?;
    let digest = reader.take(32).ok()?;
    let body = reader.take(body_len).ok()?;
    // All cores: the snapshot of a million-edge graph is tens of megabytes.
    if blake3::Hasher::new()
        .update_rayon(body)
        .finalize()
        .as_bytes()
        != digest
    {
        return None;
    }
    decode_body(body, token).ok()
}

fn encode_body(g: &Graph) -> Vec<u8> {
    let n = g.ids.len();
    let m = g.edge_from.len();
    let mut out = Vec::with_capacity(32 + n * 14 + m * 13 + g.labels.len() + g.params.len());
    for count in [n, m, g.labels.len(), g.params.len()] {
        out.extend_from_slice(&(count as u64).to_le_bytes());
    }
    for id in &g.ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&g.kinds);
    out.extend(g.deleted.iter().map(|&d| u8::from(d)));
    for end in &g.label_ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    out.extend_from_slice(g.labels.as_bytes());
    for column in [&g.edge_from, &g.edge_to] {
        for v in column {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&g.edge_rel);
    for end in &g.param_ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    out.extend_from_slice(g.params.as_bytes());
    out
}

fn decode_body(body: &[u8], token: &str) -> Result<Graph> {
    let mut r = Reader { bytes: body, at: 0 };
    let n = r.len_u64()?;
    let m = r.len_u64()?;
    let labels_len = r.len_u64()?;
    let params_len = r.len_u64()?;
    let ids = r
        .take(n.checked_mul(8).ok_or_else(corrupt)?)?
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let kinds = r.take(n)?.to_vec();
    let deleted = r.take(n)?.iter().map(|&d| d != 0).collect();
    let label_ends = r.u32s(n)?;
    let labels = String::from_utf8(r.take(labels_len)?.to_vec()).map_err(|_| corrupt())?;
    let edge_from = r.u32s(m)?;
    let edge_to = r.u32s(m)?;
    let edge_rel = r.take(m)?.to_vec();
    let param_ends = r.u32s(m)?;
    let params = String::from_utf8(r.take(params_len)?.to_vec()).map_err(|_| corrupt())?;
    if r.at != body.len() {
        return Err(corrupt());
    }
    Graph::assemble(
        token.to_string(),
        ids,
        kinds,
        deleted,
        label_ends,
        labels,
        edge_from,
        edge_to,
        edge_rel,
        param_ends,
        params,
    )
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(len).ok_or_else(corrupt)?;
        let slice = self.bytes.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(slice)
    }

    fn len_u64(&mut self) -> Result<usize> {
        let raw = self.take(8)?;
        let value = u64::from_le_bytes(raw.try_into().map_err(|_| corrupt())?);
        usize::try_from(value).map_err(|_| corrupt())
    }

    fn u32s(&mut self, count: usize) -> Result<Vec<u32>> {
        Ok(self
            .take(count.checked_mul(4).ok_or_else(corrupt)?)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect())
    }
}
