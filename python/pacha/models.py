"""The records pacha returns and the documents it stores, as pydantic models.

Model cards follow Mitchell et al. 2019 ("Model Cards for Model Reporting"); datasheets follow
Gebru et al. 2021 ("Datasheets for Datasets"). Both forbid unknown top-level fields (a typo
should be an error, not silently dropped); free-form additions go in ``extra``.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = [
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
    "RunRecord",
    "Stage",
    "StageTransition",
    "VerifyProblem",
    "VerifyResult",
]


#: Metrics must be real numbers: NaN and infinity cannot be compared, ranked or stored as JSON.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class Stage(str, Enum):
    """Lifecycle stages. Allowed moves: development→staging|archived;
    staging→development|production|archived; production→staging|archived;
    archived→development."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelCard(_Document):
    """A model card (Mitchell et al. 2019)."""

    description: Optional[str] = None
    training_data: Optional[str] = Field(None, description="Dataset(s) the model was trained on.")
    training_recipe: Optional[str] = Field(None, description="Recipe reference or summary.")
    training_date: Optional[Union[date, datetime]] = None
    training_duration: Optional[str] = Field(None, description="e.g. '3h 20m' or seconds.")
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    evaluation_data: Optional[str] = None
    primary_uses: list[str] = Field(default_factory=list)
    out_of_scope_uses: list[str] = Field(default_factory=list)
    limitations: list[str] = Field(default_factory=list)
    ethical_considerations: list[str] = Field(default_factory=list)
    parent_model: Optional[str] = None
    derived_from: list[str] = Field(default_factory=list)
    license: Optional[str] = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Feature(_Document):
    """One feature (column) of a dataset."""

    name: str
    dtype: str
    description: Optional[str] = None
    nullable: bool = False
    statistics: dict[str, Any] = Field(default_factory=dict)


class Datasheet(_Document):
    """A datasheet for a dataset (Gebru et al. 2021)."""

    # Motivation
    purpose: Optional[str] = None
    creators: list[str] = Field(default_factory=list)
    funding: Optional[str] = None
    # Composition
    instance_count: Optional[int] = Field(None, ge=0)
    features: list[Feature] = Field(default_factory=list)
    sensitive_features: list[str] = Field(default_factory=list)
    # Collection process
    collection_method: Optional[str] = None
    collection_start: Optional[date] = None
    collection_end: Optional[date] = None
    preprocessing_steps: list[str] = Field(default_factory=list)
    # Distribution
    license: Optional[str] = None
    access_restrictions: Optional[str] = None
    # Maintenance
    maintainer: Optional[str] = None
    update_frequency: Optional[str] = None
    deprecation_policy: Optional[str] = None
    extra: dict[str, Any] = Field(default_factory=dict)


class StageTransition(BaseModel):
    """One stage change of a version: from, to, when, who (the OS user)."""

    from_stage: Optional[Stage]
    to_stage: Stage
    at: datetime
    by: str


class ArtifactVersion(BaseModel):
    """One registered version of a model, dataset or recipe."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["model", "dataset", "recipe"]
    name: str
    version: str
    stage: Stage
    digest: str = Field(description="BLAKE3 of the file, or of the tree manifest (64 hex).")
    layout: Literal["file", "tree"]
    size: int = Field(description="Logical bytes: the file, or the sum of a directory's files.")
    file_count: int
    description: Optional[str] = None
    aliases: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    created_by: str
    history: list[StageTransition] = Field(default_factory=list)
    run: Optional[str] = Field(None, description="Id of the run that produced this version.")
    _document: Optional[str] = PrivateAttr(default=None)
    _skipped: tuple[str, ...] = PrivateAttr(default=())
    _removed: tuple[str, ...] = PrivateAttr(default=())

    @property
    def ref(self) -> str:
        """``name:version``, usable wherever a reference is accepted."""
        return f"{self.name}:{self.version}"

    @property
    def skipped(self) -> tuple[str, ...]:
        """Paths of the registered directory that were left out (``.git``,
        ``__pycache__``); empty except on the result of a registration."""
        return self._skipped

    def _set_skipped(self, paths: list[str]) -> None:
        self.__pydantic_private__["_skipped"] = tuple(paths)  # type: ignore[index]

    @property
    def removed(self) -> tuple[str, ...]:
        """Entries of the directory a download replaced (``force=True``) that were not part
        of this version, and so were removed; empty except on the result of a download."""
        return self._removed

    def _set_removed(self, paths: list[str]) -> None:
        self.__pydantic_private__["_removed"] = tuple(paths)  # type: ignore[index]

    def document(self) -> Optional[dict[str, Any]]:
        """The stored card or datasheet as plain JSON data, if any."""
        from pacha.records import stored_object

        return stored_object(self._document, f"card of {self.ref}")

    def to_json(self) -> dict[str, Any]:
        """The JSON form the CLI prints (``--json``); see `pacha.records`."""
        from pacha.records import transition_dict, version_dict

        return version_dict(
            kind=self.kind,
            name=self.name,
            version=self.version,
            stage=self.stage.value,
            digest=self.digest,
            layout=self.layout,
            size=self.size,
            file_count=self.file_count,
            description=self.description,
            aliases=self.aliases,
            tags=self.tags,
            created_at=self.created_at,
            created_by=self.created_by,
            history=[
                transition_dict(
                    t.from_stage.value if t.from_stage else None, t.to_stage.value, t.at, t.by
                )
                for t in self.history
            ],
            document=self.document(),
            run=self.run,
        )


class ModelVersion(ArtifactVersion):
    kind: Literal["model"] = "model"

    @property
    def card(self) -> Optional[ModelCard]:
        document = self.document()
        return ModelCard.model_validate(document) if document is not None else None


class DatasetVersion(ArtifactVersion):
    kind: Literal["dataset"] = "dataset"

    @property
    def datasheet(self) -> Optional[Datasheet]:
        document = self.document()
        return Datasheet.model_validate(document) if document is not None else None


class RecipeVersion(ArtifactVersion):
    kind: Literal["recipe"] = "recipe"

    @property
    def recipe(self) -> dict[str, Any]:
        """The parsed recipe, every value with its TOML type (an int stays an int)."""
        return self.document() or {}


#: Seconds without a sign of life after which a running run counts as abandoned.
ABANDONED_AFTER = 600.0


class RunRecord(BaseModel):
    """One experiment run: its recipe, status, parameters, captured environment, the final
    value (at the highest step) of each metric, and its artifacts."""

    model_config = ConfigDict(frozen=True)

    id: str
    recipe: Optional[str] = Field(None, description="`name:version` of the recipe, if any.")
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    params: dict[str, Any]
    environment: dict[str, Any]
    started_at: datetime
    finished_at: Optional[datetime] = None
    error: Optional[str] = None
    created_by: str
    metrics: dict[str, float] = Field(default_factory=dict)
    metric_steps: dict[str, int] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict, description="name → digest")
    last_seen: Optional[datetime] = Field(
        None,
        description="When a running run last showed a sign of life (a write, or the "
        "tracker's heartbeat every minute).",
    )

    @property
    def abandoned(self) -> bool:
        """True for a run still marked running that has shown no sign of life for
        `ABANDONED_AFTER` seconds: its process most likely died (SIGKILL, a lost node)."""
        import time

        if self.status != "running":
            return False
        seen = self.last_seen or self.started_at
        return time.time() - seen.timestamp() > ABANDONED_AFTER


class NameSummary(BaseModel):
    name: str
    versions: int
    latest: Optional[str] = Field(None, description="Highest version that is not a pre-release.")


class RegistryStats(BaseModel):
    models: int
    datasets: int
    recipes: int
    runs: int
    versions: int
    objects: int
    stored_bytes: int = Field(description="Bytes stored, each object once (after dedup).")
    logical_bytes: int = Field(description="Sum of every version's size (before dedup).")

    @property
    def dedup_ratio(self) -> Optional[float]:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else None


class VerifyProblem(BaseModel):
    digest: Optional[str]
    kind: Literal["corrupt", "truncated", "missing", "unreadable", "stray", "inconsistent"]
    path: str
    detail: str
    breaks: list[str] = Field(description="Every `name:version` that needs the object.")


class VerifyResult(BaseModel):
    ok: bool
    checked: int
    bytes: int
    problems: list[VerifyProblem]


class RepairResult(BaseModel):
    """What `Registry.repair` did: the version, how many problems its bytes had before, and
    the problems left (none when the repair worked)."""

    version: str = Field(description="`kind/name:version` of the repaired version.")
    damaged: int
    remaining: list[VerifyProblem]

    @property
    def ok(self) -> bool:
        return not self.remaining


class LineageNode(BaseModel):
    """A node of the lineage graph: a model, dataset or recipe version, or a run."""

    id: str = Field(description="`kind/name:version`, or `run/RUN_ID`.")
    kind: Literal["model", "dataset", "recipe", "run"]
    name: str = Field(description="The artifact's name, or the run id.")
    version: Optional[str] = None
    depth: int = Field(0, description="Edges between this node and the query's start.")
    direction: Optional[Literal["up", "down"]] = Field(
        None, description="`up` for an ancestor, `down` for a descendant; None for the start."
    )
    deleted: bool = Field(False, description="A deleted version, kept as a tombstone.")


class LineageEdge(BaseModel):
    """An edge from a derived node to what it came from (`from_` was made from `to`)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    relation: Literal[
        "fine_tuned",
        "distilled",
        "merged",
        "quantized",
        "pruned",
        "trained_on",
        "evaluated_on",
        "trained_with",
        "produced_by",
        "used",
        "executed",
        "derived_from",
    ]
    params: dict[str, Any] = Field(default_factory=dict)


class ImpactEntry(BaseModel):
    """A model downstream of a node, with its stage (impact analysis)."""

    model: ModelVersion
    depth: int = Field(description="Edges between the node and this model.")


class GcResult(BaseModel):
    """What garbage collection removed (or, with ``dry_run``, would remove)."""

    objects_removed: int
    bytes_freed: int
    temp_files_removed: int
    temp_bytes_freed: int
    young_objects_kept: int = Field(
        description="Unreferenced objects spared because they are younger than the grace period."
    )
    objects_kept: int = Field(description="Objects still referenced.")
    objects_marked: int = Field(
        default=0,
        description="Unreferenced objects this run marked (a shared registry collects in two "
        "phases): a later run removes those still unreferenced then.",
    )
    dry_run: bool
