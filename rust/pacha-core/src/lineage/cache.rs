//! The lineage graph's on-disk snapshot, `cache/lineage.graph` in the registry: the
//! [`Graph`] columns as little-endian arrays, named by the database token they were built
//! from and checked by a BLAKE3 digest of the body, which trails it so that both writing and
//! reading stream through bounded buffers (the file is tens of megabytes for a million edges).
//!
//! It is a cache: losing it, or finding it stale or damaged, costs one rebuild from the
//! database, never a wrong answer. So it is written atomically (temporary file, rename) but
//! not fsync'd, and a file that fails any check is ignored.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};

use super::Graph;
use crate::fsutil::{Dir, TempFile};
use crate::{CoreError, Result};

const MAGIC: &[u8; 8] = b"PACHALG\x02";
pub const FILE_NAME: &str = "lineage.graph";
const MAX_TOKEN: u64 = 256;
const BUFFER: usize = 1 << 20;

fn corrupt() -> CoreError {
    CoreError::Corrupt {
        message: "lineage graph cache is damaged".into(),
    }
}

/// Bytes of the body for these counts, or None if they overflow.
fn body_len(n: usize, m: usize, labels: usize, params: usize) -> Option<u64> {
    let nodes = n.checked_mul(8 + 1 + 1 + 4)?;
    let edges = m.checked_mul(4 + 4 + 1 + 4)?;
    let total = 32usize
        .checked_add(nodes)?
        .checked_add(edges)?
        .checked_add(labels)?
        .checked_add(params)?;
    u64::try_from(total).ok()
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Serialise `graph` into `dir/lineage.graph` (a file of `mode`), replacing any older
/// snapshot.
pub(crate) fn save(graph: &Graph, dir: &Dir, mode: u32) -> Result<()> {
    let tmp = TempFile::new_in(dir, ".lineage.tmp", mode)?;
    let path = tmp.path();
    let io = |e| CoreError::io(&path, e);
    let g = graph;
    let len = body_len(
        g.ids.len(),
        g.edge_from.len(),
        g.labels.len(),
        g.params.len(),
    )
    .ok_or_else(corrupt)?;
    {
        let mut out = BufWriter::with_capacity(BUFFER, tmp.file());
        let token = g.token.as_bytes();
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&(token.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(token).map_err(io)?;
        out.write_all(&len.to_le_bytes()).map_err(io)?;
        let mut body = Hashing {
            inner: out,
            hasher: blake3::Hasher::new(),
        };
        write_body(g, &mut body).map_err(io)?;
        let digest = body.hasher.finalize();
        let mut out = body.inner;
        out.write_all(digest.as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
    }
    tmp.persist(dir, FILE_NAME)
        .map_err(|e| CoreError::io(dir.join(FILE_NAME), e))
}

fn write_body(g: &Graph, out: &mut impl Write) -> std::io::Result<()> {
    for count in [
        g.ids.len(),
        g.edge_from.len(),
        g.labels.len(),
        g.params.len(),
    ] {
        out.write_all(&(count as u64).to_le_bytes())?;
    }
    for id in &g.ids {
        out.write_all(&id.to_le_bytes())?;
    }
    out.write_all(&g.kinds)?;
    for &d in &g.deleted {
        out.write_all(&[u8::from(d)])?;
    }
    write_u32s(out, &g.label_ends)?;
    out.write_all(g.labels.as_bytes())?;
    write_u32s(out, &g.edge_from)?;
    write_u32s(out, &g.edge_to)?;
    out.write_all(&g.edge_rel)?;
    write_u32s(out, &g.param_ends)?;
    out.write_all(g.params.as_bytes())
}

fn write_u32s(out: &mut impl Write, values: &[u32]) -> std::io::Result<()> {
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// The snapshot in `dir`, if there is one built from the database state `token` and it is
/// intact. Read through a bounded buffer straight into the graph's columns, hashing as it
/// goes; every count is checked against the file's size before anything is allocated.
pub(crate) fn load(dir: &Dir, token: &str) -> Option<Graph> {
    let file = dir.open_read(FILE_NAME).ok()??;
    let size = file.metadata().ok()?.len();
    let mut r = Source {
        inner: BufReader::with_capacity(BUFFER, file),
        hasher: None,
    };
    if r.bytes(8).ok()? != MAGIC {
        return None;
    }
    let token_len = r.u64().ok()?;
    if token_len > MAX_TOKEN || r.bytes(token_len as usize).ok()? != token.as_bytes() {
        return None;
    }
    let declared = r.u64().ok()?;
    if Some(declared) != size.checked_sub(8 + 8 + token_len + 8 + 32) {
        return None;
    }
    r.hasher = Some(blake3::Hasher::new());
    let graph = read_body(&mut r, declared, token).ok()?;
    let digest = r.hasher.take()?.finalize();
    let mut trailer = [0u8; 32];
    r.inner.read_exact(&mut trailer).ok()?;
    (digest.as_bytes() == &trailer).then_some(graph)
}

fn read_body(r: &mut Source, declared: u64, token: &str) -> Result<Graph> {
    let n = r.count()?;
    let m = r.count()?;
    let labels_len = r.count()?;
    let params_len = r.count()?;
    if body_len(n, m, labels_len, params_len) != Some(declared) {
        return Err(corrupt());
    }
    let mut ids = Vec::with_capacity(n);
    r.each(n, 8, |c| {
        ids.push(i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
    })?;
    let kinds = r.bytes(n)?;
    let deleted = r.bytes(n)?.into_iter().map(|d| d != 0).collect();
    let label_ends = r.u32s(n)?;
    let labels = String::from_utf8(r.bytes(labels_len)?).map_err(|_| corrupt())?;
    let edge_from = r.u32s(m)?;
    let edge_to = r.u32s(m)?;
    let edge_rel = r.bytes(m)?;
    let param_ends = r.u32s(m)?;
    let params = String::from_utf8(r.bytes(params_len)?).map_err(|_| corrupt())?;
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

/// The file, read in order, hashed once the body starts.
struct Source {
    inner: BufReader<File>,
    hasher: Option<blake3::Hasher>,
}

impl Source {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner.read_exact(buf).map_err(|_| corrupt())?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(buf);
        }
        Ok(())
    }

    fn bytes(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u64(&mut self) -> Result<u64> {
        let mut raw = [0u8; 8];
        self.fill(&mut raw)?;
        Ok(u64::from_le_bytes(raw))
    }

    fn count(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| corrupt())
    }

    /// Call `f` on each of `count` little-endian values of `width` bytes, a buffer at a time.
    fn each(&mut self, count: usize, width: usize, mut f: impl FnMut(&[u8])) -> Result<()> {
        let mut buf = vec![0u8; BUFFER - BUFFER % width];
        let mut left = count.checked_mul(width).ok_or_else(corrupt)?;
        while left > 0 {
            let chunk = left.min(buf.len());
            self.fill(&mut buf[..chunk])?;
            buf[..chunk].chunks_exact(width).for_each(&mut f);
            left -= chunk;
        }
        Ok(())
    }

    fn u32s(&mut self, count: usize) -> Result<Vec<u32>> {
        let mut values = Vec::with_capacity(count);
        self.each(count, 4, |c| {
            values.push(u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
        })?;
        Ok(values)
    }
}
