//! Large objects go up as multipart uploads, parts of [`PART_SIZE`] with [`PARTS_IN_FLIGHT`]
//! in flight, through the crate's low-level multipart calls rather than its `WriteMultipart`:
//! they give us the bucket's upload id, which the registry's index records while the upload
//! runs (renewed every [`RENEW_EVERY`]). The parts of an upload whose writer died are billed
//! by the bucket yet shown by no object listing, and not every S3-compatible server or client
//! library lists incomplete uploads; with the id recorded, gc aborts such an upload once it
//! has gone unrenewed for the grace period.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::PutPayload;
use tokio::task::JoinHandle;

use super::{backend_error, S3Store, PARTS_IN_FLIGHT, PART_SIZE};
use crate::store::TempSweep;
use crate::{hash, CoreError, Digest, Progress, Result};

/// How often a running upload renews its record: far below any sensible grace period.
const RENEW_EVERY: Duration = Duration::from_secs(60);

type Part = JoinHandle<object_store::Result<PartId>>;

/// One multipart upload: its key, the bucket's id for it, and the parts in flight.
struct Upload {
    client: Arc<AmazonS3>,
    key: Key,
    id: String,
    in_flight: VecDeque<Part>,
    done: Vec<PartId>,
}

impl S3Store {
    /// Upload the opened `file` of `size` bytes whose digest is `digest` as a multipart
    /// upload, re-hashing what is sent: a file that changed since it was hashed aborts the
    /// upload and stores nothing. Any failure aborts the upload.
    pub(super) fn upload_multipart(
        &self,
        mut file: File,
        source: &Path,
        digest: &Digest,
        size: u64,
        progress: &Progress,
    ) -> Result<()> {
        let client = self.client()?;
        let key = self.key(digest);
        let id = self.block_on(client.create_multipart(&key))?;
        let mut upload = Upload {
            client,
            key,
            id,
            in_flight: VecDeque::new(),
            done: Vec::new(),
        };
        if let Some(index) = &self.index {
            if let Err(e) = index.begin_upload(upload.key.as_ref(), &upload.id) {
                self.abort(&mut upload);
                return Err(e);
            }
        }
        let outcome = self
            .send_parts(&mut upload, &mut file, source, digest, size, progress)
            .and_then(|()| {
                let parts = std::mem::take(&mut upload.done);
                self.block_on(
                    upload
                        .client
                        .complete_multipart(&upload.key, &upload.id, parts),
                )
            });
        match outcome {
            Ok(_) => {
                if let Some(index) = &self.index {
                    // Best effort: a record left behind names a completed upload, which gc's
                    // abort finds gone and forgets.
                    let _ = index.end_upload(&upload.id);
                }
                Ok(())
            }
            Err(e) => {
                self.abort(&mut upload);
                Err(e)
            }
        }
    }

    fn send_parts(
        &self,
        upload: &mut Upload,
        file: &mut File,
        source: &Path,
        digest: &Digest,
        size: u64,
        progress: &Progress,
    ) -> Result<()> {
        let runtime = crate::runtime::runtime()?;
        let mut hasher = blake3::Hasher::new();
        let mut sent = 0u64;
        let mut renewed = Instant::now();
        loop {
            progress.check()?;
            if upload.in_flight.len() >= PARTS_IN_FLIGHT {
                self.finish_oldest_part(upload)?;
            }
            if let (Some(index), true) = (&self.index, renewed.elapsed() >= RENEW_EVERY) {
                index.renew_upload(&upload.id)?;
                renewed = Instant::now();
            }
            let mut part = vec![0u8; PART_SIZE];
            // Never more than the hashed size and one byte: a file that keeps growing is a
            // changed source, not an endless upload.
            let n = hash::read_full(&mut file.take(size + 1 - sent), source, &mut part)?;
            if n == 0 {
                break;
            }
            part.truncate(n);
            hasher.update(&part);
            sent += n as u64;
            let (client, key, id) = (
                Arc::clone(&upload.client),
                upload.key.clone(),
                upload.id.clone(),
            );
            let index = upload.done.len() + upload.in_flight.len();
            let payload = PutPayload::from(Bytes::from(part));
            upload.in_flight.push_back(
                runtime.spawn(async move { client.put_part(&key, &id, index, payload).await }),
            );
            progress.advance(n as u64);
        }
        if sent != size || Digest::from(hasher.finalize()) != *digest {
            return Err(CoreError::SourceChanged {
                path: source.into(),
                detail: "its contents differ between hashing and uploading".into(),
            });
        }
        while !upload.in_flight.is_empty() {
            self.finish_oldest_part(upload)?;
        }
        Ok(())
    }

    /// Wait for the oldest part in flight (parts are completed in the order they started,
    /// which is the order `complete_multipart` wants).
    fn finish_oldest_part(&self, upload: &mut Upload) -> Result<()> {
        let Some(part) = upload.in_flight.pop_front() else {
            return Ok(());
        };
        let runtime = crate::runtime::runtime()?;
        let done = runtime.block_on(part).map_err(|e| CoreError::Internal {
            message: format!("an upload task failed: {e}"),
        })?;
        upload
            .done
            .push(done.map_err(|e| backend_error(&self.location.uri(), &e))?);
        Ok(())
    }

    /// Stop the parts in flight and abort the upload; best effort (what is left, gc aborts
    /// once the record is older than the grace period).
    fn abort(&self, upload: &mut Upload) {
        let Ok(runtime) = crate::runtime::runtime() else {
            return;
        };
        for part in upload.in_flight.drain(..) {
            part.abort();
            // A part already sent may still complete; the abort below discards it.
            let _ = runtime.block_on(part);
        }
        let aborted = runtime.block_on(upload.client.abort_multipart(&upload.key, &upload.id));
        if aborted.is_ok() {
            if let Some(index) = &self.index {
                let _ = index.end_upload(&upload.id);
            }
        }
    }

    /// Abort the recorded uploads not renewed since `older_than` (their writers died), as
    /// gc's sweep of temporary files.
    pub(super) fn sweep_uploads(&self, older_than: SystemTime, dry_run: bool) -> Result<TempSweep> {
        let mut sweep = TempSweep::default();
        let Some(index) = &self.index else {
            return Ok(sweep);
        };
        let idle = SystemTime::now()
            .duration_since(older_than)
            .unwrap_or(Duration::ZERO);
        let client = self.client()?;
        for (key, id) in index.stale_uploads(idle)? {
            sweep.files += 1;
            if dry_run {
                continue;
            }
            let key = Key::from(key);
            match self.request(client.abort_multipart(&key, &id))? {
                // Gone already: aborted, or completed by a writer that died before it
                // removed the record.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => index.end_upload(&id)?,
                Err(e) => return Err(backend_error(&self.location.uri(), &e)),
            }
        }
        Ok(sweep)
    }
}
