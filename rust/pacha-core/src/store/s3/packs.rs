//! Small objects in a bucket travel packed: a directory's files up to [`PACK_MAX`] bytes are
//! gathered by a batch, the registry's pack index is asked in one query which of them it
//! has already, and the rest go up concatenated as one pack object (`PREFIX/packs/<BLAKE3
//! of the pack>`), at most [`PACK_FLUSH_BYTES`] each: 100,000 small files become a few
//! dozen PUTs, not 100,000. The index (a table beside the metadata, see `PackIndex`) records
//! each member's pack and byte range only after the pack's PUT completed; a member is read
//! back with one ranged GET and verified against its address like any object.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::ObjectStoreExt;

use super::{backend_error, S3Store};
use crate::store::{PackIndex, PackedAt, PutOutcome, SyncBatch, PACK_MAX};
use crate::{hash, CoreError, Digest, Progress, Result};

/// A batch uploads its pending small objects as one pack once they reach this many bytes
/// (one PUT: below the multipart size), which also bounds its memory.
pub(super) const PACK_FLUSH_BYTES: usize = 8 << 20;

/// Locations kept from a prefetch at most; beyond, the map is cleared and filled again.
const LOCATED_MAX: usize = 1 << 20;

/// Whole packs kept in memory while their members are read (a tree's small files: one GET
/// for the pack, not one per file): at most this many, each at most `PACK_FLUSH_BYTES`.
const PACKS_HELD: usize = 4;

/// Packs read whole, and how many members of each a prefetch announced.
#[derive(Debug, Default)]
pub(super) struct PackReads {
    wanted: HashMap<Digest, usize>,
    held: Vec<(Digest, Bytes)>,
}

/// Where an object of the bucket is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Found {
    /// Its own key, of this many bytes.
    Loose(u64),
    Packed(PackedAt),
}

impl Found {
    pub(super) fn size(&self) -> u64 {
        match self {
            Found::Loose(size) => *size,
            Found::Packed(at) => at.size,
        }
    }
}

impl S3Store {
    /// Pack the small files of a directory, with `index` as the registry's pack index.
    pub fn with_index(mut self, index: Arc<dyn PackIndex>) -> Self {
        self.index = Some(index);
        self
    }

    pub(super) fn pack_key(&self, pack: &Digest) -> Key {
        if self.location.prefix.is_empty() {
            Key::from(format!("packs/{}", pack.to_hex()))
        } else {
            Key::from(format!("{}/packs/{}", self.location.prefix, pack.to_hex()))
        }
    }

    pub(super) fn packs_prefix(&self) -> Key {
        if self.location.prefix.is_empty() {
            Key::from("packs")
        } else {
            Key::from(format!("{}/packs", self.location.prefix))
        }
    }

    /// Learn where those of `digests` that are packed are, in one query.
    pub(super) fn locate_all(&self, digests: &[Digest]) -> Result<()> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        let found = index.locate(digests)?;
        {
            let mut reads = self
                .pack_reads
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            reads.wanted.clear();
            for (_, at) in &found {
                *reads.wanted.entry(at.pack).or_default() += 1;
            }
        }
        let mut located = self.located.lock().unwrap_or_else(PoisonError::into_inner);
        if located.len() + found.len() > LOCATED_MAX {
            located.clear();
        }
        located.extend(found);
        Ok(())
    }

    /// Where `digest` is: a location learned before (no request), its own key (one HEAD),
    /// or the pack index (one query).
    pub(super) fn find(&self, digest: &Digest) -> Result<Option<Found>> {
        let known = self
            .located
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .copied();
        if let Some(at) = known {
            return Ok(Some(Found::Packed(at)));
        }
        if let Some(size) = self.head(digest)? {
            return Ok(Some(Found::Loose(size)));
        }
        let Some(index) = &self.index else {
            return Ok(None);
        };
        Ok(index
            .locate(std::slice::from_ref(digest))?
            .into_iter()
            .next()
            .map(|(_, at)| Found::Packed(at)))
    }

    /// A packed object's bytes (unverified: the caller checks them against the address):
    /// sliced from its pack held in memory, or read whole with the pack when a prefetch
    /// announced several members of it, else one ranged GET.
    pub(super) fn read_packed(&self, at: &PackedAt) -> Result<Bytes> {
        if at.size == 0 {
            return Ok(Bytes::new());
        }
        let range = at.offset..at.offset + at.size;
        let slice = |pack: &Bytes| -> Option<Bytes> {
            let (start, end) = (
                usize::try_from(range.start).ok()?,
                usize::try_from(range.end).ok()?,
            );
            (end <= pack.len()).then(|| pack.slice(start..end))
        };
        let mut reads = self
            .pack_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, pack)) = reads.held.iter().find(|(d, _)| *d == at.pack) {
            if let Some(data) = slice(pack) {
                return Ok(data);
            }
        }
        if reads.wanted.get(&at.pack).is_some_and(|&n| n > 1) {
            // Held while the pack is read: the other readers of its members wait for it
            // rather than read it again.
            let (blobs, key) = (self.blobs()?, self.pack_key(&at.pack));
            let pack = self.block_on(async { blobs.get(&key).await?.bytes().await })?;
            if reads.held.len() >= PACKS_HELD {
                reads.held.remove(0);
            }
            reads.held.push((at.pack, pack.clone()));
            if let Some(data) = slice(&pack) {
                return Ok(data);
            }
            return Err(self.pack_too_short(at));
        }
        drop(reads);
        let data = self.block_on(self.blobs()?.get_range(&self.pack_key(&at.pack), range))?;
        if data.len() as u64 != at.size {
            return Err(self.pack_too_short(at));
        }
        Ok(data)
    }

    fn pack_too_short(&self, at: &PackedAt) -> CoreError {
        CoreError::Corrupt {
            message: format!(
                "pack {} of {} ends before the bytes {}..{} the index records",
                at.pack,
                self.location.uri(),
                at.offset,
                at.offset + at.size
            ),
        }
    }

    /// Read a small file whole (at most `PACK_MAX` bytes, checked again while reading) and
    /// leave it to the batch's next pack; `written: false` (see `ObjectStore`).
    pub(super) fn put_packable(
        &self,
        mut file: File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
        batch: &SyncBatch,
    ) -> Result<PutOutcome> {
        let expected = meta.len();
        let data = super::read_small(&mut file, source, expected)?;
        progress.advance(expected);
        let digest = hash::hash_slice(&data);
        let outcome = PutOutcome {
            digest,
            size: expected,
            written: false,
        };
        let full = batch.small().queue(digest, data, PACK_FLUSH_BYTES);
        if let Some(rows) = full {
            self.upload_pack(batch, rows)?;
        }
        Ok(outcome)
    }

    /// Upload as one pack those of `rows` the registry does not have yet, then record them.
    pub(super) fn upload_pack(
        &self,
        batch: &SyncBatch,
        rows: Vec<(Digest, Vec<u8>)>,
    ) -> Result<()> {
        let Some(index) = &self.index else {
            return Err(CoreError::Internal {
                message: "a pack without a pack index".into(),
            });
        };
        if rows.is_empty() {
            return Ok(());
        }
        let digests: Vec<Digest> = rows.iter().map(|(d, _)| *d).collect();
        let known = index.known(&digests)?;
        let mut body = Vec::with_capacity(rows.iter().map(|(_, r)| r.len()).sum());
        let mut members = Vec::new();
        for (digest, data) in rows {
            if known.contains(&digest) {
                continue;
            }
            members.push((digest, body.len() as u64, data.len() as u64));
            body.extend_from_slice(&data);
        }
        if members.is_empty() {
            return Ok(());
        }
        let pack = hash::hash_slice(&body);
        let size = body.len() as u64;
        let key = self.pack_key(&pack);
        // Unconditional: a pack's key is its bytes' address, so writing over one only ever
        // puts the same bytes there, and a pack found damaged (a member marked so is being
        // stored again) must be replaced, not kept. The body travels either way.
        let blobs = self.blobs()?;
        self.block_on(blobs.put(
            &key,
            object_store::PutPayload::from_bytes(Bytes::from(body)),
        ))?;
        let repaired = index.record_pack(&pack, size, &members)?;
        for digest in &repaired {
            // A loose copy of a member that was damaged is the damaged copy (a loose key is
            // read before the index): gone, the member is read from this pack.
            match self.request(blobs.delete(&self.key(digest)))? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend_error(&self.location.uri(), &e)),
            }
        }
        self.forget_damaged(&repaired);
        let placed: HashMap<Digest, PackedAt> = members
            .iter()
            .map(|&(digest, offset, size)| {
                (
                    digest,
                    PackedAt {
                        pack,
                        offset,
                        size,
                        recorded: None,
                    },
                )
            })
            .collect();
        batch
            .small()
            .written
            .extend(members.iter().map(|(digest, _, _)| *digest));
        self.located
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(placed);
        Ok(())
    }

    /// Whether a file of `size` bytes in a batch is packed.
    pub(super) fn packs_size(&self, size: u64) -> bool {
        self.index.is_some() && size <= PACK_MAX
    }
}
