"""pacha: a registry for machine-learning artifacts, with a Rust core.

Every public name is listed in ``__all__`` below. Start with ``pacha.Registry()``. Hashing
is BLAKE3-256 (identical to ``b3sum``); the object store is content-addressed, durable and
verifiable.
"""

from typing import TYPE_CHECKING, Any

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
    BackendError,
    CancelledError,
    DatabaseError,
    IntegrityError,
    InternalError,
    InvalidInputError,
    InvalidTransitionError,
    LineageCycleError,
    NotFoundError,
    PachaError,
    ReadOnlyRegistryError,
    RegistryBusyError,
    SourceChangedError,
    UnsafeRegistryError,
)
from pacha.home import open_store, registry_path

# The registry and its pydantic models load on first use (PEP 562), so that `import pacha`
# and commands that do not need them (`pacha --help`, `pacha hash`) start fast.
_LAZY = {
    "Registry": "pacha.registry",
    "RecipeProblem": "pacha.recipes",
    "RecipeValidationError": "pacha.recipes",
    "Lineage": "pacha.lineage",
    "CacheInfo": "pacha.cache",
    "cache_info": "pacha.cache",
    "prune_cache": "pacha.cache",
    **dict.fromkeys(
        (
            "ArtifactVersion",
            "DatasetVersion",
            "Datasheet",
            "Feature",
            "GcResult",
            "ImpactEntry",
            "LineageEdge",
            "LineageNode",
            "ModelCard",
            "ModelVersion",
            "NameSummary",
            "RecipeVersion",
            "RegistryStats",
            "RepairResult",
            "Stage",
            "StageTransition",
            "VerifyProblem",
            "VerifyResult",
        ),
        "pacha.models",
    ),
}

if TYPE_CHECKING:
    from pacha.cache import CacheInfo, cache_info, prune_cache
    from pacha.lineage import Lineage
    from pacha.models import (
        ArtifactVersion,
        DatasetVersion,
        Datasheet,
        Feature,
        GcResult,
        ImpactEntry,
        LineageEdge,
        LineageNode,
        ModelCard,
        ModelVersion,
        NameSummary,
        RecipeVersion,
        RegistryStats,
        RepairResult,
        Stage,
        StageTransition,
        VerifyProblem,
        VerifyResult,
    )
    from pacha.recipes import RecipeProblem, RecipeValidationError
    from pacha.registry import Registry


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pacha' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AlreadyExistsError",
    "ArtifactVersion",
    "BackendError",
    "CacheInfo",
    "CancelledError",
    "DatabaseError",
    "DatasetVersion",
    "Datasheet",
    "Feature",
    "GcResult",
    "Hasher",
    "ImpactEntry",
    "IntegrityError",
    "InternalError",
    "InvalidInputError",
    "InvalidTransitionError",
    "Lineage",
    "LineageCycleError",
    "LineageEdge",
    "LineageNode",
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
    "ReadOnlyRegistryError",
    "RecipeProblem",
    "RecipeValidationError",
    "RecipeVersion",
    "Registry",
    "RegistryBusyError",
    "RegistryStats",
    "RepairResult",
    "SourceChangedError",
    "Stage",
    "StageTransition",
    "UnsafeRegistryError",
    "VerifyProblem",
    "VerifyReport",
    "VerifyResult",
    "__version__",
    "cache_info",
    "compare_versions",
    "hash_bytes",
    "hash_file",
    "open_store",
    "parse_version",
    "prune_cache",
    "registry_path",
    "validate_name",
]
