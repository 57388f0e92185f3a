//! The object store in an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...), through the
//! Apache Arrow `object_store` crate.
//!
//! Layout: `s3://BUCKET/PREFIX/objects/<first 2 hex>/<64 hex>`, the local store's shard
//! scheme (see docs/store-format.md). Objects are immutable and content-addressed, so a put
//! asks first whether the address exists (a conditional PUT still sends the whole body) and
//! writes with `If-None-Match: *`, for which "already exists" is success. Every byte read
//! back is re-hashed before it is trusted.
//!
//! Credentials and endpoint come the way the AWS tools take them (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`, ...); requests are path-style
//! (what S3-compatible servers expect) and plain HTTP only when the endpoint says `http://`.
//! Every request has a bounded time and a bounded number of retries.

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore as Blobs, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig,
};

use std::collections::{HashMap, HashSet};

use super::{
    Expected, ExportOptions, ObjectInfo, ObjectStore, PackIndex, PackedAt, Problem, ProblemKind,
    PutOutcome, SyncBatch, TempSweep, VerifyReport,
};
use super::{Recorded, SMALL_OBJECT_MAX};
use crate::error::IoContext;
use crate::{destination, hash, CoreError, Digest, Progress, Result};

/// Objects up to this size go up in one PUT; larger ones in parts of this size.
const PART_SIZE: usize = 16 << 20;
/// Parts of one object in flight at once (memory: this many parts).
const PARTS_IN_FLIGHT: usize = 4;
/// Large objects are read back in ranges of this size, each its own bounded request.
const READ_RANGE: u64 = 8 << 20;

/// How long the first request (a listing, at open) may take before the store is reported
/// unreachable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The object naming the registry a prefix belongs to (see `S3Store::check_owner`).
const REGISTRY_MARKER: &str = "pacha-registry";

/// Ranged GETs of one object in flight at once.
const RANGES_IN_FLIGHT: usize = 8;

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slashes (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parse `s3://BUCKET[/PREFIX]`.
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = |why: &str| CoreError::InvalidInput {
            message: format!("invalid object store URL {uri:?}: {why}; write s3://BUCKET/PREFIX"),
        };
        let rest = uri
            .get(..5)
            .filter(|scheme| scheme.eq_ignore_ascii_case("s3://"))
            .and_then(|_| uri.get(5..))
            .ok_or_else(|| invalid("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules: 3-63 of lowercase letters, digits, '.' and '-'.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(invalid(
                "the bucket name must be 3 to 63 lowercase letters, digits, '.' or '-'",
            ));
        }
        let prefix = prefix.trim_matches('/');
        // Keys are written exactly as given: characters the client would percent-encode
        // (and empty, '.' or '..' components) are refused rather than silently changed.
        if prefix
            .split('/')
            .any(|part| part == "." || part == ".." || (part.is_empty() && !prefix.is_empty()))
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "the prefix may hold letters, digits, '.', '_', '-' and '/' between non-empty \
                 components other than '.' and '..'",
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    pub fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The object store in a bucket.
pub struct S3Store {
    location: S3Location,
    /// How to build a client: after `fork`, a child builds its own (the parent's connections
    /// belong to a runtime whose threads the child does not have).
    builder: AmazonS3Builder,
    client: Mutex<Option<(u32, Arc<AmazonS3>)>>,
    /// The registry's index of packed small objects (see `packs`); without one, every
    /// object has a key of its own.
    index: Option<Arc<dyn PackIndex>>,
    /// Where packed objects are, as learned from the index (a tree's files, looked up
    /// together before they are read).
    located: Mutex<HashMap<Digest, PackedAt>>,
    pack_reads: Mutex<packs::PackReads>,
    /// Objects a check found missing or damaged: stored again by the next put, whatever
    /// the index says (a repair).
    damaged: Mutex<HashSet<Digest>>,
}

/// What a put knows of an address before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Absent,
    /// Not in the index: absent, unless an interrupted write left it.
    Unknown,
    Damaged,
}

mod multipart;
mod packs;
use packs::Found;

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client: its configuration holds credentials.
        f.debug_struct("S3Store")
            .field("location", &self.location.uri())
            .finish()
    }
}

/// rustls needs one process-wide crypto provider; `ring` is the one built in.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl S3Store {
    /// Open the store at `s3://BUCKET/PREFIX`, configured from the `AWS_*` environment, and
    /// check that the bucket answers (a clear error within a bounded time if not).
    pub fn open(uri: &str) -> Result<Self> {
        let location = S3Location::parse(uri)?;
        check_credentials(&location)?;
        install_crypto_provider();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_virtual_hosted_style_request(false);
        let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok()
            .filter(|e| !e.is_empty());
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            // S3-compatible servers accept any region; AWS itself redirects.
            builder = builder.with_region("us-east-1");
        } else if let Ok(region) = std::env::var("AWS_REGION") {
            builder = builder.with_region(region);
        }
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let options = ClientOptions::new()
            .with_allow_http(plain_http)
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(120));
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        };
        let store = S3Store {
            location,
            builder: builder.with_client_options(options).with_retry(retry),
            client: Mutex::new(None),
            index: None,
            located: Mutex::new(HashMap::new()),
            pack_reads: Mutex::default(),
            damaged: Mutex::default(),
        };
        store.check_reachable()?;
        Ok(store)
    }

    /// One listing request: a wrong endpoint, a wrong secret or a missing bucket fails here,
    /// at open, rather than in the middle of an upload.
    fn check_reachable(&self) -> Result<()> {
        let prefix = self.objects_prefix();
        let blobs = self.blobs()?;
        let answered = crate::runtime::runtime()?.block_on(async {
            // A server that accepts connections and says nothing would otherwise hold the
            // open for the whole request timeout (sized for large parts).
            tokio::time::timeout(OPEN_TIMEOUT, async {
                let mut listing = blobs.list(Some(&prefix));
                match listing.next().await {
                    None | Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(e),
                }
            })
            .await
        });
        match answered {
            Ok(outcome) => outcome.map_err(|e| backend_error(&self.location.uri(), &e)),
            Err(_) => Err(CoreError::Backend {
                service: "object store",
                location: self.location.uri(),
                message: format!(
                    "no answer within {} s; check AWS_ENDPOINT_URL and that the server runs",
                    OPEN_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    /// This process's client for the bucket.
    fn blobs(&self) -> Result<Arc<dyn Blobs>> {
        Ok(self.client()?)
    }

    /// This process's client, with its multipart calls.
    fn client(&self) -> Result<Arc<AmazonS3>> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if let Some((owner, client)) = slot.as_ref() {
            if *owner == pid {
                return Ok(Arc::clone(client));
            }
        }
        let client = Arc::new(
            self.builder
                .clone()
                .build()
                .map_err(|e| backend_error(&self.location.uri(), &e))?,
        );
        *slot = Some((pid, Arc::clone(&client)));
        Ok(client)
    }

    /// Run a request to completion on this process's runtime.
    fn block_on<T>(
        &self,
        work: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        crate::runtime::runtime()?
            .block_on(work)
            .map_err(|e| backend_error(&self.location.uri(), &e))
    }

    /// [`Self::block_on`], with the crate's error kept for the caller to match.
    fn request<T>(
        &self,
        work: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<object_store::Result<T>> {
        Ok(crate::runtime::runtime()?.block_on(work))
    }

    fn objects_prefix(&self) -> Key {
        if self.location.prefix.is_empty() {
            Key::from("objects")
        } else {
            Key::from(format!("{}/objects", self.location.prefix))
        }
    }

    fn key(&self, digest: &Digest) -> Key {
        let hex = digest.to_hex();
        let shard = &hex[..2];
        if self.location.prefix.is_empty() {
            Key::from(format!("objects/{shard}/{hex}"))
        } else {
            Key::from(format!("{}/objects/{shard}/{hex}", self.location.prefix))
        }
    }

    /// What a key names, shown in messages (`s3://bucket/key`).
    pub(crate) fn display(&self, digest: &Digest) -> PathBuf {
        PathBuf::from(format!(
            "s3://{}/{}",
            self.location.bucket,
            self.key(digest)
        ))
    }

    /// The digest an object key names, if it is a well-formed object key.
    fn digest_of(&self, key: &Key) -> Option<Digest> {
        let text = key.as_ref();
        let rest = text
            .strip_prefix(self.objects_prefix().as_ref())?
            .strip_prefix('/')?;
        let (shard, hex) = rest.split_once('/')?;
        let digest = Digest::parse(hex).ok()?;
        (shard == &hex[..2]).then_some(digest)
    }

    fn head(&self, digest: &Digest) -> Result<Option<u64>> {
        let key = self.key(digest);
        match self.request(self.blobs()?.head(&key))? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend_error(&self.location.uri(), &e)),
        }
    }

    /// PUT if absent (or, with `replace`, over a damaged copy); true when this call
    /// stored it.
    fn put_small(&self, digest: &Digest, data: Bytes, replace: bool) -> Result<bool> {
        let key = self.key(digest);
        let options = PutOptions {
            mode: if replace {
                PutMode::Overwrite
            } else {
                PutMode::Create
            },
            ..PutOptions::default()
        };
        let blobs = self.blobs()?;
        match self.request(blobs.put_opts(&key, PutPayload::from_bytes(data), options))? {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(backend_error(&self.location.uri(), &e)),
        }
    }

    /// Upload an opened file whose digest is known, re-hashing what is sent: if the file
    /// changed since it was hashed, the upload is aborted and nothing is stored. `replace`
    /// writes over a damaged copy. True only when this call surely created the object: a
    /// multipart upload cannot be conditional, and an object another writer may also have
    /// stored must never be deleted as ours if a registration fails (gc removes it if no
    /// version ever references it).
    fn upload(
        &self,
        mut file: File,
        source: &Path,
        digest: &Digest,
        size: u64,
        progress: &Progress,
        replace: bool,
    ) -> Result<bool> {
        let changed = || CoreError::SourceChanged {
            path: source.into(),
            detail: "its contents differ between hashing and uploading".into(),
        };
        if size <= PART_SIZE as u64 {
            // One PUT needs its body whole: bounded by PART_SIZE, checked above. One byte more
            // catches a file that grew since it was hashed.
            let mut data = vec![0u8; size as usize + 1];
            let n = hash::read_full(&mut file, source, &mut data)?;
            data.truncate(n);
            if data.len() as u64 != size || hash::hash_slice(&data) != *digest {
                return Err(changed());
            }
            let created = self.put_small(digest, Bytes::from(data), replace)?;
            progress.advance(size);
            return Ok(created && !replace);
        }
        self.upload_multipart(file, source, digest, size, progress)?;
        // Unconditional: another writer may have stored the same bytes meanwhile.
        Ok(false)
    }

    /// Stream an object of `size` bytes (as `head` found) through `sink`, hashing it;
    /// returns its digest and length. Large objects are read as ranges, several requests in
    /// flight (as boto3's `download_file` does) but handed to `sink` in order, so memory is
    /// bounded by [`RANGES_IN_FLIGHT`] × [`READ_RANGE`].
    fn read_hashing(
        &self,
        digest: &Digest,
        size: u64,
        progress: &Progress,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<(Digest, u64)> {
        let key = self.key(digest);
        let blobs = self.blobs()?;
        let location = self.location.uri();
        let ranges = (0..size)
            .step_by(READ_RANGE as usize)
            .map(move |at| at..size.min(at + READ_RANGE));
        let mut hasher = blake3::Hasher::new();
        let mut read = 0u64;
        let runtime = crate::runtime::runtime()?;
        runtime.block_on(async {
            // Each range is its own task, so the ranges in flight keep arriving on the
            // runtime's threads while this thread hashes and writes the one before (polled
            // only from here, they would wait for it). Bounded: RANGES_IN_FLIGHT ranges.
            let mut chunks = futures::stream::iter(ranges)
                .map(|range: Range<u64>| {
                    let (blobs, key) = (Arc::clone(&blobs), key.clone());
                    AbortOnDrop(runtime.spawn(async move { blobs.get_range(&key, range).await }))
                })
                .buffered(RANGES_IN_FLIGHT);
            while let Some(data) = chunks.next().await {
                let data = data.map_err(|e| backend_error(&location, &e))?;
                progress.check()?;
                if data.is_empty() {
                    break;
                }
                hasher.update(&data);
                sink(&data)?;
                progress.advance(data.len() as u64);
                read += data.len() as u64;
            }
            Ok::<(), CoreError>(())
        })?;
        Ok((hasher.finalize().into(), read))
    }

    /// Check that this prefix belongs to the registry `id` (see `Registry::connect`): its
    /// marker object names `id`, or, absent, is written now (`claim`, conditionally: of two
    /// registries claiming one prefix at once, one wins). A prefix that another registry
    /// uses is refused: its garbage collection would delete the other's objects.
    pub fn check_owner(&self, id: &str, claim: bool) -> Result<()> {
        let key = self.marker_key();
        let blobs = self.blobs()?;
        let read = |blobs: &Arc<dyn Blobs>| -> Result<Option<String>> {
            match self.request(async { blobs.get(&key).await?.bytes().await })? {
                Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(backend_error(&self.location.uri(), &e)),
            }
        };
        let mut owner = read(&blobs)?;
        if owner.is_none() && claim {
            let options = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            let body = PutPayload::from_bytes(Bytes::from(format!("{id}\n")));
            match self.request(blobs.put_opts(&key, body, options))? {
                Ok(_) => return Ok(()),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => owner = read(&blobs)?,
                Err(e) => return Err(backend_error(&self.location.uri(), &e)),
            }
        }
        match owner {
            Some(owner) if owner != id => Err(CoreError::InvalidInput {
                message: format!(
                    "{} holds the objects of another registry (its {} names registry {owner}, \
                     not {id}); give this registry a prefix of its own",
                    self.location.uri(),
                    key
                ),
            }),
            _ => Ok(()),
        }
    }

    fn marker_key(&self) -> Key {
        if self.location.prefix.is_empty() {
            Key::from(REGISTRY_MARKER)
        } else {
            Key::from(format!("{}/{REGISTRY_MARKER}", self.location.prefix))
        }
    }

    /// Stream the object `digest` through `sink` (unverified: the caller compares the
    /// digest returned, of the bytes passed, with `digest`), adding its size to `progress`'s
    /// total. For a cache filling itself from this store.
    pub(crate) fn fetch(
        &self,
        digest: &Digest,
        progress: &Progress,
        sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Digest> {
        let found = self
            .find(digest)?
            .ok_or(CoreError::ObjectNotFound { digest: *digest })?;
        progress.add_total(found.size());
        self.read_found(digest, found, progress, sink)
    }

    /// [`Self::read_hashing`] for an object wherever it is; returns the digest of what was
    /// passed to `sink`.
    fn read_found(
        &self,
        digest: &Digest,
        found: Found,
        progress: &Progress,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Digest> {
        match found {
            Found::Loose(size) => Ok(self.read_hashing(digest, size, progress, sink)?.0),
            Found::Packed(at) => {
                let data = self.read_packed(&at)?;
                sink(&data)?;
                progress.advance(data.len() as u64);
                Ok(hash::hash_slice(&data))
            }
        }
    }

    fn integrity(&self, digest: &Digest, actual: Digest) -> CoreError {
        CoreError::Integrity {
            expected: *digest,
            actual,
            path: self.display(digest),
        }
    }

    fn check_one(&self, expected: &Expected, progress: &Progress) -> Result<Option<Problem>> {
        let digest = expected.digest;
        let path = self.display(&digest);
        let problem = |kind, detail: String| {
            Some(Problem {
                kind,
                digest: Some(digest),
                path: path.clone(),
                detail,
            })
        };
        let report = |found: Option<Problem>| {
            if found.is_some() {
                self.note_damaged(&digest);
            }
            Ok(found)
        };
        let Some(found) = self.find(&digest)? else {
            return report(problem(ProblemKind::Missing, "not in the bucket".into()));
        };
        let size = found.size();
        if let Some(recorded) = expected.size {
            if size < recorded {
                return report(problem(
                    ProblemKind::Truncated,
                    format!("{size} bytes where {recorded} were recorded"),
                ));
            }
        }
        let actual = match found {
            Found::Loose(size) => self.read_hashing(&digest, size, progress, |_| Ok(()))?.0,
            Found::Packed(at) => {
                let data = match self.read_packed(&at) {
                    Ok(data) => data,
                    Err(CoreError::Corrupt { message }) => {
                        return report(problem(ProblemKind::Truncated, message))
                    }
                    Err(e) => return Err(e),
                };
                progress.advance(data.len() as u64);
                hash::hash_slice(&data)
            }
        };
        if actual == digest {
            return Ok(None);
        }
        report(problem(
            ProblemKind::Corrupt,
            format!("its bytes hash to {actual}"),
        ))
    }

    /// Hash an opened file, then upload it unless its address is stored already. With
    /// `count_total`, adds the bytes it will read to `progress`'s total.
    fn put_opened(
        &self,
        mut file: File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
        count_total: bool,
    ) -> Result<PutOutcome> {
        let size = meta.len();
        if count_total {
            progress.add_total(size);
        }
        // Hash first (local and fast): the address decides whether anything is sent. A small
        // file is read once into memory, hashed and sent from there (a read-ahead thread and
        // its buffers would cost more than the whole file); a large one is read again by the
        // upload.
        let small = if size <= SMALL_OBJECT_MAX {
            let data = read_small(&mut file, source, size)?;
            progress.advance(size);
            Some(data)
        } else {
            None
        };
        let digest: Digest = match &small {
            Some(data) => hash::hash_slice(data),
            None => {
                let mut hasher = hash::Hasher::new();
                hash::update_read_ahead(&mut hasher, &mut file, source, progress)?;
                hasher.finalize().into()
            }
        };
        let not_written = Ok(PutOutcome {
            digest,
            size,
            written: false,
        });
        let recorded = match &self.index {
            _ if self.is_damaged(&digest) => Recorded::Damaged,
            Some(index) => index.recorded(&digest)?,
            None => Recorded::Unknown,
        };
        let presence = match recorded {
            // Recorded only after its PUT completed, and gc is held off until this
            // registration commits: one query instead of a HEAD.
            Recorded::Sound => return not_written,
            Recorded::Damaged => Presence::Damaged,
            // Most likely absent: the conditional PUT finds out.
            Recorded::Unknown if small.is_some() && self.index.is_some() => Presence::Unknown,
            Recorded::Unknown => match self.head(&digest)? {
                Some(found) if found == size => return not_written,
                // An object of another size at this address is damaged: our verified bytes
                // replace it.
                Some(_) => Presence::Damaged,
                None => Presence::Absent,
            },
        };
        let replace = presence == Presence::Damaged;
        let written = match small {
            Some(data) => {
                let data = Bytes::from(data);
                let created = self.put_small(&digest, data.clone(), replace)?;
                if !created && presence == Presence::Unknown && self.head(&digest)? != Some(size) {
                    // Left by an interrupted write, and not whole.
                    self.put_small(&digest, data, true)?
                } else {
                    created
                }
            }
            None => {
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).at(source)?;
                // The upload reads the file again (even in a batch, whose caller counted one
                // pass).
                progress.add_total(size);
                self.upload(file, source, &digest, size, progress, replace)?
            }
        };
        if replace {
            if let Some(index) = &self.index {
                index.mark_repaired(std::slice::from_ref(&digest))?;
            }
            self.forget_damaged(std::slice::from_ref(&digest));
        }
        Ok(PutOutcome {
            digest,
            size,
            written,
        })
    }

    /// Remember that a check found `digest` missing or damaged, here and in the registry's
    /// index (for every process): the next store of its bytes writes it again. The index
    /// mark is best effort (a read-only registry cannot record it); this process still
    /// knows.
    fn note_damaged(&self, digest: &Digest) {
        self.damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(*digest);
        if let Some(index) = &self.index {
            let _ = index.mark_damaged(std::slice::from_ref(digest));
            self.located
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(digest);
        }
    }

    /// `digests` were stored again whole: no longer damaged, and no longer where a damaged
    /// copy was.
    fn forget_damaged(&self, digests: &[Digest]) {
        let mut damaged = self.damaged.lock().unwrap_or_else(PoisonError::into_inner);
        let mut located = self.located.lock().unwrap_or_else(PoisonError::into_inner);
        for digest in digests {
            damaged.remove(digest);
            located.remove(digest);
        }
    }

    /// Whether a check found `digest` missing or damaged (its next store writes it again).
    fn is_damaged(&self, digest: &Digest) -> bool {
        self.damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(digest)
    }

    fn list_keys(&self) -> Result<Vec<object_store::ObjectMeta>> {
        self.list_under(&self.objects_prefix())
    }

    /// Every key under `prefix`. The crate pages through ListObjectsV2 (1,000 keys a page)
    /// for us.
    fn list_under(&self, prefix: &Key) -> Result<Vec<object_store::ObjectMeta>> {
        let blobs = self.blobs()?;
        self.block_on(async {
            let mut out = Vec::new();
            let mut listing = blobs.list(Some(prefix));
            while let Some(meta) = listing.next().await {
                match meta {
                    Ok(meta) => out.push(meta),
                    // A key that is no valid path (an empty or `..` segment) is no object:
                    // passed over here, and never fatal to a listing.
                    Err(object_store::Error::InvalidPath { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }
}

/// A file of `size` bytes, at most `SMALL_OBJECT_MAX` (1 MiB: the only whole-file read of
/// the store, and bounded), read whole; one that grew or shrank since its size was taken is
/// refused.
pub(super) fn read_small(file: &mut File, source: &Path, size: u64) -> Result<Vec<u8>> {
    if size > SMALL_OBJECT_MAX {
        return Err(CoreError::Internal {
            message: format!("read_small of {} ({size} bytes)", source.display()),
        });
    }
    // One byte more than the size found: a file that grew since is caught.
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
    file.take(size + 1).read_to_end(&mut data).at(source)?;
    if data.len() as u64 != size {
        return Err(CoreError::SourceChanged {
            path: source.into(),
            detail: format!("{size} bytes became {} while it was read", data.len()),
        });
    }
    Ok(data)
}

/// Refuse to go looking for credentials that cannot be there: without keys in the
/// environment the client asks the EC2 instance metadata service, which only an EC2
/// instance has (and which `AWS_EC2_METADATA_DISABLED=true` forbids).
fn check_credentials(location: &S3Location) -> Result<()> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let missing = |what: String| CoreError::Backend {
        service: "object store",
        location: location.uri(),
        message: what,
    };
    match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        (true, true) => return Ok(()),
        (true, false) => {
            return Err(missing(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both".into(),
            ))
        }
        (false, true) => {
            return Err(missing(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both".into(),
            ))
        }
        (false, false) => {}
    }
    let elsewhere = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|name| set(name));
    let metadata_disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !elsewhere && metadata_disabled {
        return Err(missing(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the EC2 \
             instance metadata service is disabled by AWS_EC2_METADATA_DISABLED)"
                .into(),
        ));
    }
    Ok(())
}

/// The status of an answer in the 5xx range, from the crate's words ("Server returned
/// non-2xx status code: 500 Internal Server Error: ..."), if the request got one.
fn server_failure(text: &str) -> Option<String> {
    let at = text.find("status code: 5")? + "status code: ".len();
    let status: String = text[at..]
        .chars()
        .take_while(|&c| c != ':' && c != '\n')
        .take(60)
        .collect();
    Some(format!("HTTP {}", status.trim()))
}

/// One line for a failed request: what failed and what to check, never a credential.
fn backend_error(location: &str, error: &object_store::Error) -> CoreError {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    let denied = matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    );
    let message = if lower.contains("/latest/api/token") || lower.contains("169.254.169.254") {
        "no S3 credentials: none in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and no EC2 \
         instance role answered; set them"
            .to_string()
    } else if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        "the bucket does not exist; create it, or check the bucket name".to_string()
    } else if denied
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("accessdenied")
    {
        "access denied; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and \
         the bucket's permissions"
            .to_string()
    } else if let Some(status) = server_failure(&text) {
        // Checked before the words of a lost connection: the crate's retry summary says
        // "retry_timeout" even when the server answered.
        format!(
            "the object store failed the request ({status}); try again, and if it persists \
             check the server's health and free space"
        )
    } else if lower.contains("connect")
        || lower.contains("error sending request")
        || lower.contains("dns")
        || lower.contains("timed out")
        || lower.contains("timeout")
    {
        "cannot reach the object store; check AWS_ENDPOINT_URL and that the server runs".to_string()
    } else {
        // The crate's own words, first line only (they name the key, never a secret).
        text.lines().next().unwrap_or("request failed").to_string()
    };
    CoreError::Backend {
        service: "object store",
        location: location.to_string(),
        message,
    }
}

impl ObjectStore for S3Store {
    fn location(&self) -> String {
        self.location.uri()
    }

    fn put_file(&self, source: &Path, progress: &Progress) -> Result<PutOutcome> {
        let (file, meta) = crate::fsutil::open_regular(source)?;
        self.put_open_file(file, &meta, source, progress)
    }

    fn put_open_file(
        &self,
        file: File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
    ) -> Result<PutOutcome> {
        self.put_opened(file, meta, source, progress, true)
    }

    fn put_bytes(&self, data: &[u8]) -> Result<PutOutcome> {
        let digest = hash::hash_slice(data);
        let written = self.put_small(&digest, Bytes::copy_from_slice(data), false)?;
        Ok(PutOutcome {
            digest,
            size: data.len() as u64,
            written,
        })
    }

    fn put_open_file_batched(
        &self,
        file: File,
        meta: &std::fs::Metadata,
        source: &Path,
        progress: &Progress,
        batch: &SyncBatch,
    ) -> Result<PutOutcome> {
        if self.packs_size(meta.len()) {
            return self.put_packable(file, meta, source, progress, batch);
        }
        // A large object is durable when its PUT returns: nothing to defer.
        self.put_opened(file, meta, source, progress, false)
    }

    fn finish_batch(&self, batch: &SyncBatch) -> Result<()> {
        let rows = batch.small().take_rows();
        self.upload_pack(batch, rows)
    }

    fn prefetch(&self, digests: &[Digest]) -> Result<()> {
        self.locate_all(digests)
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.find(digest)?.is_some())
    }

    fn size_of(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.find(digest)?.map(|found| found.size()))
    }

    fn export(
        &self,
        digest: &Digest,
        dest: &Path,
        options: ExportOptions,
        progress: &Progress,
    ) -> Result<u64> {
        let parent = destination::prepare_file(dest, options.overwrite)?;
        let found = self
            .find(digest)?
            .ok_or(CoreError::ObjectNotFound { digest: *digest })?;
        let written = found.size();
        progress.add_total(written);
        let mut part = destination::part_file(&parent, options.mode)?;
        let part_path = part.path().to_path_buf();
        let actual = self.read_found(digest, found, progress, |data| {
            part.as_file_mut().write_all(data).at(&part_path)
        })?;
        if actual != *digest {
            // Dropping `part` deletes the partial output.
            return Err(self.integrity(digest, actual));
        }
        destination::publish_file(part, dest, options.overwrite, &parent)?;
        Ok(written)
    }

    fn get_bytes(&self, digest: &Digest, max_len: u64) -> Result<Vec<u8>> {
        let found = self
            .find(digest)?
            .ok_or(CoreError::ObjectNotFound { digest: *digest })?;
        let size = found.size();
        if size > max_len {
            return Err(CoreError::Corrupt {
                message: format!(
                    "object {digest} is {size} bytes, more than the {max_len} expected here"
                ),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        let actual = self.read_found(digest, found, &Progress::new(), |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })?;
        if actual != *digest {
            return Err(self.integrity(digest, actual));
        }
        Ok(data)
    }

    fn read_prefix(&self, digest: &Digest, len: usize) -> Result<Vec<u8>> {
        let found = self
            .find(digest)?
            .ok_or(CoreError::ObjectNotFound { digest: *digest })?;
        let end = found.size().min(len as u64);
        if end == 0 {
            return Ok(Vec::new());
        }
        let data = match found {
            Found::Loose(_) => self.block_on(self.blobs()?.get_range(&self.key(digest), 0..end))?,
            Found::Packed(at) => self.read_packed(&at)?.slice(..end as usize),
        };
        Ok(data.to_vec())
    }

    fn list(&self) -> Result<Vec<ObjectInfo>> {
        let mut objects: Vec<ObjectInfo> = self
            .list_keys()?
            .into_iter()
            .filter_map(|meta| {
                Some(ObjectInfo {
                    digest: self.digest_of(&meta.location)?,
                    size: meta.size,
                    modified: Some(SystemTime::from(meta.last_modified)),
                })
            })
            .collect();
        if let Some(index) = &self.index {
            objects.extend(index.packed()?.into_iter().map(|(digest, at)| ObjectInfo {
                digest,
                size: at.size,
                modified: at.recorded,
            }));
        }
        // An object both loose and packed is listed once, as recently as either copy.
        objects.sort_by(|a, b| (a.digest, b.modified).cmp(&(b.digest, a.modified)));
        objects.dedup_by_key(|o| o.digest);
        Ok(objects)
    }

    fn verify(&self, expected: &[Expected], progress: &Progress) -> Result<VerifyReport> {
        let digests: Vec<Digest> = expected.iter().map(|e| e.digest).collect();
        self.locate_all(&digests)?;
        let mut report = VerifyReport::default();
        for item in expected {
            let before = progress.done();
            if let Some(problem) = self.check_one(item, progress)? {
                report.problems.push(problem);
            }
            report.checked += 1;
            report.bytes += progress.done().saturating_sub(before);
        }
        report.problems.sort_by_key(|p| (p.kind, p.digest));
        Ok(report)
    }

    fn verify_all(&self, progress: &Progress) -> Result<VerifyReport> {
        let listed = self.list()?;
        progress.add_total(listed.iter().map(|o| o.size).sum());
        let expected: Vec<Expected> = listed
            .iter()
            .map(|o| Expected {
                digest: o.digest,
                size: None,
            })
            .collect();
        let mut report = self.verify(&expected, progress)?;
        report.problems.extend(self.layout_problems()?);
        Ok(report)
    }

    fn layout_problems(&self) -> Result<Vec<Problem>> {
        Ok(self
            .list_keys()?
            .into_iter()
            .filter(|meta| self.digest_of(&meta.location).is_none())
            .map(|meta| Problem {
                kind: ProblemKind::Stray,
                digest: None,
                path: PathBuf::from(format!("s3://{}/{}", self.location.bucket, meta.location)),
                detail: "a key under the objects prefix that is not an object address".into(),
            })
            .collect())
    }

    fn remove(&self, digests: &[Digest]) -> Result<u64> {
        let mut freed = 0;
        if let Some(index) = &self.index {
            let packed = index.locate(digests)?;
            freed += packed.iter().map(|(_, at)| at.size).sum::<u64>();
            {
                let mut located = self.located.lock().unwrap_or_else(|p| p.into_inner());
                for (digest, _) in &packed {
                    located.remove(digest);
                }
            }
            let packed: Vec<Digest> = packed.into_iter().map(|(d, _)| d).collect();
            // The index first: a pack whose rows are gone but whose object stays is an
            // orphan the next sweep removes; the other way round would leave rows naming
            // bytes that are gone.
            for pack in index.forget_packed(&packed)? {
                match self.request(self.blobs()?.delete(&self.pack_key(&pack)))? {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(backend_error(&self.location.uri(), &e)),
                }
            }
        }
        for digest in digests {
            if let Some(size) = self.head(digest)? {
                match self.request(self.blobs()?.delete(&self.key(digest)))? {
                    Ok(()) => freed += size,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(backend_error(&self.location.uri(), &e)),
                }
            }
        }
        Ok(freed)
    }

    fn remove_stale_temps(&self, older_than: SystemTime, dry_run: bool) -> Result<TempSweep> {
        // Uploads write no temporary keys. What a killed registration can leave is an
        // incomplete multipart upload (aborted here once its record went unrenewed for the
        // grace period: `multipart`) and a pack uploaded but never recorded (removed here
        // once older than the grace period).
        let mut sweep = self.sweep_uploads(older_than, dry_run)?;
        let Some(index) = &self.index else {
            return Ok(sweep);
        };
        let recorded: std::collections::HashSet<Digest> = index.packs()?.into_iter().collect();
        let blobs = self.blobs()?;
        for meta in self.list_under(&self.packs_prefix())? {
            let pack = meta
                .location
                .filename()
                .and_then(|name| Digest::parse(name).ok());
            let orphan = pack.is_some_and(|p| !recorded.contains(&p));
            if !orphan || SystemTime::from(meta.last_modified) >= older_than {
                continue;
            }
            if !dry_run {
                match self.request(blobs.delete(&meta.location))? {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(backend_error(&self.location.uri(), &e)),
                }
            }
            sweep.files += 1;
            sweep.bytes += meta.size;
        }
        Ok(sweep)
    }
}

/// A spawned task that is aborted when its handle is dropped (a read given up midway leaves
/// no ranges downloading in the background); awaiting it gives the task's result.
struct AbortOnDrop<T>(tokio::task::JoinHandle<std::result::Result<T, object_store::Error>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, object_store::Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })
            })
        })
    }
}
