"""pacha: a registry for machine-learning artifacts, with a Rust core.

Every public name is listed in ``__all__`` below. Start with ``pacha.Registry()``. Hashing
is BLAKE3-256 (identical to ``b3sum``); the object store is content-addressed, durable and
verifiable.
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
    compare_versions,
    hash_bytes,
    hash_file,
    parse_version,
    validate_name,
)
from pacha.errors import (
    AlreadyExistsError,
    CancelledError,
    DatabaseError,
    IntegrityError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    PachaError,
    RegistryBusyError,
    SourceChangedError,
)
from pacha.home import open_store, registry_path
from pacha.models import (
    ArtifactVersion,
    DatasetVersion,
    Datasheet,
    Feature,
    ModelCard,
    ModelVersion,
    NameSummary,
    RegistryStats,
    Stage,
    StageTransition,
    VerifyProblem,
    VerifyResult,
)
from pacha.registry import Registry

__all__ = [
    "AlreadyExistsError",
    "ArtifactVersion",
    "CancelledError",
    "DatabaseError",
    "DatasetVersion",
    "Datasheet",
    "Feature",
    "Hasher",
    "IntegrityError",
    "InvalidInputError",
    "InvalidTransitionError",
    "ModelCard",
    "ModelVersion",
    "NameSummary",
    "NotFoundError",
    "ObjectInfo",
    "ObjectStore",
    "PachaError",
    "Problem",
    "Progress",
    "PutOutcome",
    "Registry",
    "RegistryBusyError",
    "RegistryStats",
    "SourceChangedError",
    "Stage",
    "StageTransition",
    "VerifyProblem",
    "VerifyReport",
    "VerifyResult",
    "__version__",
    "compare_versions",
    "hash_bytes",
    "hash_file",
    "open_store",
    "parse_version",
    "registry_path",
    "validate_name",
]
