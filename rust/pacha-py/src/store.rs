//! The object store for Python: a handle over the core's `ObjectStore` trait and the plain
//! result records it returns. Digests cross the boundary as 64-hex strings.

use std::path::PathBuf;
use std::sync::Arc;

use pacha_core::store::{self, Expected, LocalStore, S3Store};
use pacha_core::Digest;
use pyo3::prelude::*;

use crate::buffer::ContiguousBytes;
use crate::detach::{detached, progress_of, run_detached, Progress};
use crate::errors::to_py;

fn parse_digest(text: &str) -> PyResult<Digest> {
    Digest::parse(text).map_err(to_py)
}

/// A content-addressed object store: a local directory, or an S3-compatible bucket.
#[pyclass(frozen, module = "pacha._core")]
#[derive(Debug)]
pub struct ObjectStore(Arc<dyn store::ObjectStore>);

impl ObjectStore {
    pub(crate) fn from_arc(store: Arc<dyn store::ObjectStore>) -> Self {
        ObjectStore(store)
    }
}

#[pymethods]
impl ObjectStore {
    /// Open (creating if needed, mode 0700) the local object store rooted at `root`.
    #[new]
    fn new(py: Python<'_>, root: PathBuf) -> PyResult<Self> {
        let local = detached(py, || LocalStore::open(root))?;
        Ok(ObjectStore(Arc::new(local)))
    }

    /// Open the store at `location`: `s3://BUCKET/PREFIX` (configured from the `AWS_*`
    /// environment, checked to answer), else a local directory (created if needed).
    #[staticmethod]
    fn open(py: Python<'_>, location: &str) -> PyResult<Self> {
        let is_s3 = location
            .get(..5)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("s3://"));
        let store: Arc<dyn store::ObjectStore> = if is_s3 {
            Arc::new(detached(py, || S3Store::open(location))?)
        } else {
            let root = PathBuf::from(location);
            Arc::new(detached(py, || LocalStore::open(root))?)
        };
        Ok(ObjectStore(store))
    }

    /// Where the store lives.
    #[getter]
    fn location(&self) -> String {
        self.0.location()
    }

    /// Ingest the regular file at `path` in one streaming pass; returns what was stored.
    #[pyo3(signature = (path, progress = None))]
    fn put_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<PutOutcome> {
        let store = Arc::clone(&self.0);
        run_detached(py, progress_of(progress), move |p| store.put_file(&path, p))
            .map(PutOutcome::from)
    }

    /// Store a small in-memory object (a manifest or a card), not an artifact.
    fn put_bytes(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<PutOutcome> {
        let bytes = ContiguousBytes::get(data)?;
        detached(py, || self.0.put_bytes(bytes.as_slice())).map(PutOutcome::from)
    }

    fn contains(&self, py: Python<'_>, digest: &str) -> PyResult<bool> {
        let digest = parse_digest(digest)?;
        detached(py, || self.0.contains(&digest))
    }

    /// The stored size of an object, or None when it is absent.
    fn size_of(&self, py: Python<'_>, digest: &str) -> PyResult<Option<u64>> {
        let digest = parse_digest(digest)?;
        detached(py, || self.0.size_of(&digest))
    }

    /// Stream an object to `dest`, re-hashing it; corrupt bytes raise `IntegrityError` and
    /// leave no output. Returns the number of bytes written.
    #[pyo3(signature = (digest, dest, overwrite = false, progress = None))]
    fn export(
        &self,
        py: Python<'_>,
        digest: &str,
        dest: PathBuf,
        overwrite: bool,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<u64> {
        let digest = parse_digest(digest)?;
        let store = Arc::clone(&self.0);
        run_detached(py, progress_of(progress), move |p| {
            let options = pacha_core::store::ExportOptions {
                overwrite,
                mode: None,
            };
            store.export(&digest, &dest, options, p)
        })
    }

    /// The bytes of a small object (a manifest, a recipe), verified; objects larger than
    /// `max_len` are refused.
    fn get_bytes<'py>(
        &self,
        py: Python<'py>,
        digest: &str,
        max_len: u64,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let digest = parse_digest(digest)?;
        let data = detached(py, || self.0.get_bytes(&digest, max_len))?;
        Ok(pyo3::types::PyBytes::new(py, &data))
    }

    /// Up to `length` (at most 1 MiB) bytes from the start of an object, **not verified**:
    /// for telling what an object is, never for using its bytes.
    fn read_prefix<'py>(
        &self,
        py: Python<'py>,
        digest: &str,
        length: usize,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let digest = parse_digest(digest)?;
        let length = length.min(1 << 20);
        let data = detached(py, || self.0.read_prefix(&digest, length))?;
        Ok(pyo3::types::PyBytes::new(py, &data))
    }

    /// Every object, ordered by digest.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<ObjectInfo>> {
        let objects = detached(py, || self.0.list())?;
        Ok(objects
            .into_iter()
            .map(|o| ObjectInfo {
                digest: o.digest.to_hex(),
                size: o.size,
            })
            .collect())
    }

    /// Check the given objects: `(digest, expected size or None)` pairs.
    #[pyo3(signature = (expected, progress = None))]
    fn verify(
        &self,
        py: Python<'_>,
        expected: Vec<(String, Option<u64>)>,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<VerifyReport> {
        let expected = expected
            .iter()
            .map(|(digest, size)| {
                Ok(Expected {
                    digest: parse_digest(digest)?,
                    size: *size,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let store = Arc::clone(&self.0);
        run_detached(py, progress_of(progress), move |p| {
            store.verify(&expected, p)
        })
        .map(VerifyReport::from)
    }

    /// Check every object and report strays.
    #[pyo3(signature = (progress = None))]
    fn verify_all(
        &self,
        py: Python<'_>,
        progress: Option<&Bound<'_, Progress>>,
    ) -> PyResult<VerifyReport> {
        let store = Arc::clone(&self.0);
        run_detached(py, progress_of(progress), move |p| store.verify_all(p))
            .map(VerifyReport::from)
    }

    fn __repr__(&self) -> String {
        format!("ObjectStore({:?})", self.0.location())
    }
}

/// What `put_file`/`put_bytes` stored.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub digest: String,
    pub size: u64,
    /// False when the bytes were already present and nothing was written.
    pub written: bool,
}

impl From<store::PutOutcome> for PutOutcome {
    fn from(o: store::PutOutcome) -> Self {
        PutOutcome {
            digest: o.digest.to_hex(),
            size: o.size,
            written: o.written,
        }
    }
}

#[pymethods]
impl PutOutcome {
    fn __repr__(&self) -> String {
        format!(
            "PutOutcome(digest={:?}, size={}, written={})",
            self.digest,
            self.size,
            if self.written { "True" } else { "False" }
        )
    }
}

/// One object as listed by the store.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub digest: String,
    pub size: u64,
}

#[pymethods]
impl ObjectInfo {
    fn __repr__(&self) -> String {
        format!("ObjectInfo(digest={:?}, size={})", self.digest, self.size)
    }
}

/// One problem found by `verify`: `kind` is "corrupt", "truncated", "missing", "unreadable"
/// or "stray".
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: String,
    pub digest: Option<String>,
    pub path: String,
    pub detail: String,
}

impl From<store::Problem> for Problem {
    fn from(p: store::Problem) -> Self {
        Problem {
            kind: p.kind.as_str().to_string(),
            digest: p.digest.map(|d| d.to_hex()),
            path: p.path.display().to_string(),
            detail: p.detail,
        }
    }
}

#[pymethods]
impl Problem {
    fn __repr__(&self) -> String {
        format!(
            "Problem(kind={:?}, digest={:?}, path={:?}, detail={:?})",
            self.kind, self.digest, self.path, self.detail
        )
    }
}

/// Everything `verify` found.
#[pyclass(frozen, get_all, skip_from_py_object, module = "pacha._core")]
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub checked: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

impl From<store::VerifyReport> for VerifyReport {
    fn from(r: store::VerifyReport) -> Self {
        VerifyReport {
            checked: r.checked,
            bytes: r.bytes,
            problems: r.problems.into_iter().map(Problem::from).collect(),
        }
    }
}

#[pymethods]
impl VerifyReport {
    /// True when no problem was found.
    #[getter]
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(checked={}, bytes={}, problems={})",
            self.checked,
            self.bytes,
            self.problems.len()
        )
    }
}
