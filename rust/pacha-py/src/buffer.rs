//! Zero-copy access to any object that exports the buffer protocol.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;

/// A C-contiguous exported buffer viewed as bytes, whatever its item format (bytes,
/// bytearray, memoryview, array.array, a numpy array of any dtype).
pub(crate) struct ContiguousBytes(PyUntypedBuffer);

impl ContiguousBytes {
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buffer = PyUntypedBuffer::get(obj)?;
        if !buffer.is_c_contiguous() {
            return Err(PyBufferError::new_err(
                "the buffer is not C-contiguous; pass a contiguous copy (e.g. numpy.ascontiguousarray)",
            ));
        }
        Ok(ContiguousBytes(buffer))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        let len = self.0.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY: the exporter guarantees `len_bytes()` readable bytes at `buf_ptr()` for as
        // long as the buffer is held, and we hold it (PyBuffer_Release runs on drop). The
        // buffer is C-contiguous (checked in `get`), so those bytes are one run. Holding an
        // export also stops `bytearray` and `array` from resizing, so the memory cannot move
        // while the GIL is released. An exporter whose contents are mutated concurrently by
        // another thread yields a digest of whatever bytes were read — the same contract as
        // hashlib — never out-of-bounds access.
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr().cast::<u8>(), len) }
    }
}
