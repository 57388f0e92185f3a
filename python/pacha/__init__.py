"""pacha: a registry for machine-learning artifacts, with a Rust core.

Every public name is listed in ``__all__`` below. Hashing is BLAKE3-256 (identical to
``b3sum``); the object store is content-addressed, durable and verifiable.
"""

from pacha._core import (
    Hasher,
    ObjectInfo,
    ObjectStore,
    Problem,
    Progress,
    PutOutcome,
    VerifyReport,
    __version__,
    hash_bytes,
    hash_file,
)
from pacha.errors import (
    AlreadyExistsError,
    CancelledError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PachaError,
    SourceChangedError,
)
from pacha.home import open_store, registry_path

__all__ = [
    "AlreadyExistsError",
    "CancelledError",
    "Hasher",
    "IntegrityError",
    "InvalidInputError",
    "NotFoundError",
    "ObjectInfo",
    "ObjectStore",
    "PachaError",
    "Problem",
    "Progress",
    "PutOutcome",
    "SourceChangedError",
    "VerifyReport",
    "__version__",
    "hash_bytes",
    "hash_file",
    "open_store",
    "registry_path",
]
