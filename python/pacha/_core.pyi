# Stubs for the native module built from rust/pacha-py. Checked against the compiled module
# by tests/test_api.py (mypy.stubtest): change both together.

import builtins
import os
from pathlib import Path
from typing import Any, Optional, Union, final

from typing_extensions import Buffer

_Path = Union[str, os.PathLike[str]]

__all__ = [
    "LINEAGE_PROV",
    "LINEAGE_RELATIONS",
    "PARALLEL_THRESHOLD",
    "SMALL_OBJECT_MAX",
    "VERSION_ROW_FIELDS",
    "Hasher",
    "LineageResult",
    "NameInfo",
    "ObjectInfo",
    "ObjectStore",
    "Problem",
    "Progress",
    "PutOutcome",
    "Registry",
    "RegistryProblem",
    "RegistryVerifyReport",
    "RunInfo",
    "StatsInfo",
    "TransitionInfo",
    "VerifyReport",
    "VersionInfo",
    "__version__",
    "compare_versions",
    "download_cache_usage",
    "hash_bytes",
    "hash_file",
    "location_problem",
    "parse_version",
    "prune_download_cache",
    "validate_metric",
    "validate_name",
]

__version__: str
PARALLEL_THRESHOLD: int
SMALL_OBJECT_MAX: int
VERSION_ROW_FIELDS: list[str]
LINEAGE_RELATIONS: list[str]
LINEAGE_PROV: dict[str, str]

def hash_file(path: _Path, progress: Optional[Progress] = None) -> str:
    """BLAKE3-256 of the file at ``path`` as 64 hex characters, identical to ``b3sum``."""

def hash_bytes(data: Buffer) -> str:
    """BLAKE3-256 of any C-contiguous buffer, without copying it."""

@final
class Hasher:
    """Incremental BLAKE3 with the hashlib interface."""

    name: str
    digest_size: int
    block_size: int
    def __new__(cls, data: Optional[Buffer] = None) -> Hasher: ...
    def update(self, data: Buffer) -> None: ...
    def update_file(self, path: _Path, progress: Optional[Progress] = None) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...

@final
class Progress:
    """Progress of one long operation; readable from another thread while it runs."""

    def __new__(cls) -> Progress: ...
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    def cancel(self) -> None: ...

@final
class PutOutcome:
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def written(self) -> bool: ...

@final
class ObjectInfo:
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...

@final
class Problem:
    """One problem found by verify: kind is corrupt, truncated, missing, unreadable or stray."""

    @property
    def kind(self) -> str: ...
    @property
    def digest(self) -> Optional[str]: ...
    @property
    def path(self) -> str: ...
    @property
    def detail(self) -> str: ...

@final
class VerifyReport:
    @property
    def checked(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def problems(self) -> list[Problem]: ...
    @property
    def ok(self) -> bool: ...

@final
class ObjectStore:
    """A content-addressed object store: a local directory, or an S3-compatible bucket."""

    def __new__(cls, root: _Path) -> ObjectStore: ...
    @staticmethod
    def open(location: str) -> ObjectStore: ...
    @property
    def location(self) -> str: ...
    def put_file(self, path: _Path, progress: Optional[Progress] = None) -> PutOutcome: ...
    def put_bytes(self, data: Buffer) -> PutOutcome: ...
    def contains(self, digest: str) -> bool: ...
    def size_of(self, digest: str) -> Optional[int]: ...
    def export(
        self,
        digest: str,
        dest: _Path,
        overwrite: bool = False,
        progress: Optional[Progress] = None,
    ) -> int: ...
    def get_bytes(self, digest: str, max_len: int) -> bytes: ...
    def read_prefix(self, digest: str, length: int) -> bytes: ...
    def list(self) -> builtins.list[ObjectInfo]: ...
    def verify(
        self,
        expected: builtins.list[tuple[str, Optional[int]]],
        progress: Optional[Progress] = None,
    ) -> VerifyReport: ...
    def verify_all(self, progress: Optional[Progress] = None) -> VerifyReport: ...

def location_problem(metadata: str, objects: Optional[str] = None) -> Optional[str]:
    """Why no registry can have these locations, or None when one can."""

def parse_version(text: str) -> str:
    """Canonical text of a semantic version (SemVer 2.0.0); InvalidInputError otherwise."""

def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 by SemVer 2.0.0 precedence (build metadata ignored)."""

def validate_metric(name: str, value: float) -> None:
    """InvalidInputError unless the metric name is valid and the value finite."""

def download_cache_usage() -> tuple[Path, int, int, int, int]:
    """The download cache: (directory, objects, bytes, 0, 0). Creates nothing."""

def prune_download_cache(max_bytes: int, dry_run: bool = False) -> tuple[Path, int, int, int, int]:
    """Drop least recently used cached copies down to max_bytes: (directory, objects kept,
    bytes kept, removed, freed)."""

def validate_name(text: str) -> str:
    """The canonical (NFC) form of a valid artifact name; InvalidInputError otherwise."""

@final
class VersionInfo:
    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def layout(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def file_count(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def description(self) -> Optional[str]: ...
    @property
    def card(self) -> Optional[str]: ...
    @property
    def aliases(self) -> list[str]: ...
    @property
    def tags(self) -> list[tuple[str, str]]: ...
    @property
    def created_at(self) -> str: ...
    @property
    def created_by(self) -> str: ...
    @property
    def run_id(self) -> Optional[str]: ...

@final
class RunInfo:
    @property
    def id(self) -> str: ...
    @property
    def recipe(self) -> Optional[str]: ...
    @property
    def status(self) -> str: ...
    @property
    def params(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def started_at(self) -> str: ...
    @property
    def finished_at(self) -> Optional[str]: ...
    @property
    def error(self) -> Optional[str]: ...
    @property
    def created_by(self) -> str: ...
    @property
    def heartbeat_at(self) -> Optional[str]: ...

@final
class TransitionInfo:
    @property
    def from_stage(self) -> Optional[str]: ...
    @property
    def to_stage(self) -> str: ...
    @property
    def at(self) -> str: ...
    @property
    def by(self) -> str: ...

@final
class NameInfo:
    @property
    def name(self) -> str: ...
    @property
    def versions(self) -> int: ...
    @property
    def latest(self) -> Optional[str]: ...

@final
class RegistryProblem:
    @property
    def problem(self) -> Problem: ...
    @property
    def users(self) -> list[str]: ...

@final
class RegistryVerifyReport:
    @property
    def checked(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def problems(self) -> list[RegistryProblem]: ...

@final
class StatsInfo:
    @property
    def models(self) -> int: ...
    @property
    def datasets(self) -> int: ...
    @property
    def recipes(self) -> int: ...
    @property
    def versions(self) -> int: ...
    @property
    def runs(self) -> int: ...
    @property
    def objects(self) -> int: ...
    @property
    def stored_bytes(self) -> int: ...
    @property
    def logical_bytes(self) -> int: ...

@final
class LineageResult:
    """A lineage query's result, held in the core until read."""

    def __len__(self) -> int: ...
    @property
    def start(self) -> Optional[str]: ...
    @property
    def edge_count(self) -> int: ...
    def nodes(
        self, start: int = 0, stop: Optional[int] = None
    ) -> builtins.list[tuple[str, str, str, Optional[str], int, Optional[str], bool]]: ...
    def ids(self) -> builtins.list[str]: ...
    def edges(self) -> builtins.list[tuple[str, str, str, str]]: ...
    def to_json(self) -> str: ...

@final
class Registry:
    """The object store and the metadata database under one directory."""

    def __new__(cls, root: _Path, *, read_only: bool = False, create: bool = True) -> Registry: ...
    @staticmethod
    def connect(
        metadata: str,
        objects: Optional[str] = None,
        *,
        read_only: bool = False,
        create: bool = True,
    ) -> Registry: ...
    @property
    def label(self) -> str: ...
    @staticmethod
    def recover_database(root: _Path) -> tuple[Registry, builtins.list[str]]: ...
    def tree_files(self, digest: str) -> Optional[builtins.list[tuple[str, int]]]: ...
    def adopt(
        self,
        kind: str,
        name: str,
        version: str,
        digest: str,
        *,
        description: Optional[str] = None,
        card: Optional[str] = None,
        actor: str,
    ) -> VersionInfo: ...
    @property
    def root(self) -> Optional[Path]: ...
    @property
    def read_only_reason(self) -> Optional[str]: ...
    @property
    def store(self) -> ObjectStore: ...
    def register(
        self,
        kind: str,
        name: str,
        source: _Path,
        *,
        version: Optional[str] = None,
        bump: Optional[str] = None,
        description: Optional[str] = None,
        card: Optional[str] = None,
        tags: builtins.list[tuple[str, str]] = ...,
        actor: str,
        run: Optional[str] = None,
        lineage: builtins.list[tuple[str, str, str]] = ...,
        include_vcs: bool = False,
        progress: Optional[Progress] = None,
    ) -> tuple[VersionInfo, builtins.list[str]]: ...
    def resolve(self, kind: str, reference: str, version: Optional[str] = None) -> VersionInfo: ...
    def list_names(self, kind: str) -> builtins.list[NameInfo]: ...
    def list_versions(
        self,
        kind: str,
        name: Optional[str] = None,
        stage: Optional[str] = None,
        tags: builtins.list[tuple[str, str]] = ...,
    ) -> builtins.list[VersionInfo]: ...
    def list_version_rows(
        self,
        kind: str,
        name: Optional[str] = None,
        stage: Optional[str] = None,
        tags: builtins.list[tuple[str, str]] = ...,
    ) -> builtins.list[tuple[Any, ...]]: ...
    def transition(
        self,
        kind: str,
        reference: str,
        version: Optional[str],
        to: str,
        *,
        archive_existing: bool = False,
        actor: str,
    ) -> VersionInfo: ...
    def history(self, version_id: int) -> builtins.list[TransitionInfo]: ...
    def set_alias(
        self, kind: str, reference: str, version: Optional[str], alias: str
    ) -> VersionInfo: ...
    def delete_alias(self, kind: str, name: str, alias: str) -> None: ...
    def set_tags(
        self,
        kind: str,
        reference: str,
        version: Optional[str],
        tags: builtins.list[tuple[str, str]],
    ) -> VersionInfo: ...
    def download(
        self,
        kind: str,
        reference: str,
        version: Optional[str],
        dest: _Path,
        *,
        overwrite: bool = False,
        progress: Optional[Progress] = None,
    ) -> tuple[VersionInfo, builtins.list[str]]: ...
    def repair(
        self,
        kind: str,
        reference: str,
        version: Optional[str],
        source: _Path,
        *,
        include_vcs: bool = False,
        progress: Optional[Progress] = None,
    ) -> tuple[VersionInfo, int, builtins.list[RegistryProblem]]: ...
    def verify(
        self,
        version_ids: Optional[builtins.list[int]] = None,
        progress: Optional[Progress] = None,
    ) -> RegistryVerifyReport: ...
    def create_run(
        self,
        id: str,
        recipe: Optional[str],
        recipe_version: Optional[str],
        params: str,
        environment: str,
        actor: str,
        used: builtins.list[tuple[str, Optional[str]]] = ...,
    ) -> RunInfo: ...
    def resolve_run(self, id: str) -> RunInfo: ...
    def set_run_params(self, id: str, params: str) -> None: ...
    def log_metrics(
        self, id: str, points: builtins.list[tuple[str, int, float, float]]
    ) -> None: ...
    def log_at_next_step(
        self, id: str, values: builtins.list[tuple[str, float]], at: float
    ) -> int: ...
    def heartbeat_run(self, id: str) -> None: ...
    def finish_run(self, id: str, status: str, error: Optional[str] = None) -> RunInfo: ...
    def list_runs(
        self,
        recipe: Optional[str] = None,
        recipe_version: Optional[str] = None,
        status: Optional[str] = None,
    ) -> builtins.list[RunInfo]: ...
    def run_metrics(self, id: str) -> builtins.list[tuple[str, int, float, float]]: ...
    def final_metrics(
        self, ids: builtins.list[str]
    ) -> builtins.list[tuple[str, str, int, float]]: ...
    def best_run(
        self,
        recipe: str,
        recipe_version: Optional[str],
        metric: str,
        minimize: bool = False,
    ) -> Optional[tuple[RunInfo, int, float]]: ...
    def add_run_artifact(
        self, id: str, path: _Path, name: str, progress: Optional[Progress] = None
    ) -> tuple[str, int]: ...
    def run_artifacts(self, id: str) -> builtins.list[tuple[str, str, int]]: ...
    def stats(self) -> StatsInfo: ...
    def lineage(
        self,
        node: str,
        direction: str = "down",
        depth: Optional[int] = None,
        relations: builtins.list[str] = ...,
        kinds: builtins.list[str] = ...,
    ) -> LineageResult: ...
    def lineage_path(self, a: str, b: str) -> LineageResult: ...
    def lineage_nodes(self, query: str, node: Optional[str] = None) -> LineageResult: ...
    def add_edge(
        self, from_node: str, to_node: str, relation: str, params: str, actor: str
    ) -> bool: ...
    def impact(self, node: str) -> builtins.list[tuple[VersionInfo, int]]: ...
    def find_node(self, node: str) -> tuple[str, str, bool]: ...
    def delete(
        self, kind: str, reference: str, version: Optional[str] = None, force: bool = False
    ) -> VersionInfo: ...
    def gc(
        self, grace_seconds: float, dry_run: bool = False
    ) -> tuple[int, int, int, int, int, int, int]: ...
