"""The registry API: register, find, download, stage, alias and tag models and datasets.

Everything here is a thin layer over the Rust core (`pacha._core.Registry`): versions,
references, stage rules, storage and the database live there, once. This module adds the
documents (model cards, datasheets) and turns records into pydantic models. pydantic itself
is imported on first use: the `*_records` methods, which return plain dicts, never need it.
"""

from __future__ import annotations

import gc
import getpass
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar, Union, cast

from pacha import _core, records
from pacha.config import RegistryLocation, registry_location
from pacha.errors import InvalidInputError, NotFoundError
from pacha.records import stored_object

if TYPE_CHECKING:
    from pathlib import Path

    from pacha.lineage import Lineage, NodeLike
    from pacha.models import (
        ArtifactVersion,
        DatasetVersion,
        Datasheet,
        GcResult,
        ImpactEntry,
        ModelCard,
        ModelVersion,
        NameSummary,
        RecipeVersion,
        RegistryStats,
        RepairResult,
        RunRecord,
        Stage,
        VerifyResult,
    )
    from pacha.recipes import RecipeProblem
    from pacha.runs import Run

__all__ = ["DEFAULT_GC_GRACE", "Registry"]

#: Seconds an unreferenced object or temporary file is kept before `gc` may remove it.
DEFAULT_GC_GRACE = 24 * 3600.0

PathLike = Union[str, "os.PathLike[str]"]
Kind = Literal["model", "dataset", "recipe"]
V = TypeVar("V", bound="ArtifactVersion")
D = TypeVar("D", "ModelCard", "Datasheet")


def _actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment (some containers)
        return f"uid:{os.getuid()}"


def _timestamp(text: str) -> datetime:
    # SQLite writes UTC as ...Z; fromisoformat accepts 'Z' only from Python 3.11.
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _record(info: _core.VersionInfo, cls: type[V], history: Optional[list[Any]] = None) -> V:
    from pacha.models import Stage

    row = (
        info.kind, info.name, info.version, info.stage, info.digest, info.layout, info.size,
        info.file_count, info.description, info.aliases, info.tags, info.created_at,
        info.created_by, info.card, info.run_id,
    )  # fmt: skip
    return _model_from_row(row, cls, {stage.value: stage for stage in Stage}, history)


def _records_from_rows(rows: list[tuple[Any, ...]], cls: type[V]) -> list[V]:
    """Models for `_core.Registry.list_version_rows` tuples (fields in `VERSION_ROW_FIELDS`
    order); the hot loop of listing, kept free of per-item imports and lookups."""
    from pacha.models import Stage

    stages = {stage.value: stage for stage in Stage}
    # Thousands of new container objects would trigger the cyclic garbage collector over and
    # over (a third of the time here); these records hold no cycles, so pause it.
    paused = gc.isenabled()
    gc.disable()
    try:
        models = [_model_from_row(row, cls, stages) for row in rows]
    finally:
        if paused:
            gc.enable()
    return models


def _model_from_row(
    row: tuple[Any, ...],
    cls: type[V],
    stages: dict[str, Any],
    history: Optional[list[Any]] = None,
) -> V:
    (kind, name, version, stage, digest, layout, size, file_count, description, aliases,
     tags, created_at, created_by, card, run) = row  # fmt: skip
    fields = {
        "kind": kind,
        "name": name,
        "version": version,
        "stage": stages[stage],
        "digest": digest,
        "layout": layout,
        "size": size,
        "file_count": file_count,
        "description": description,
        "aliases": aliases,
        "tags": dict(tags),
        "created_at": _timestamp(created_at),
        "created_by": created_by,
        "history": history or [],
        "run": run,
    }
    return _construct(cls, fields, {"_document": card, "_skipped": (), "_removed": ()})


_object_setattr = object.__setattr__


def _construct(cls: type[V], fields: dict[str, Any], private: dict[str, Any]) -> V:
    """Build a model from already-validated data, as `model_construct` does, but in about a
    microsecond instead of seven: listing 10,000 versions must take milliseconds. It sets
    exactly the attributes `model_construct` sets; `tests/test_registry_api.py` checks that
    both give equal objects, so a pydantic release that changes this fails loudly."""
    obj = cls.__new__(cls)
    _object_setattr(obj, "__dict__", fields)
    _object_setattr(obj, "__pydantic_fields_set__", set(fields))
    _object_setattr(obj, "__pydantic_extra__", None)
    _object_setattr(obj, "__pydantic_private__", private)
    return obj


def _document(value: Union[D, Mapping[str, Any], PathLike, None], model: type[D]) -> Optional[D]:
    if value is None:
        return None
    if isinstance(value, model):
        return value
    if isinstance(value, Mapping):
        return _validated(model, dict(value))
    from pacha.cards import load_document

    return load_document(cast(PathLike, value), model)


def _validated(model: type[D], data: dict[str, Any]) -> D:
    """Validate a card or datasheet given as data; errors become `InvalidInputError`."""
    from pydantic import ValidationError

    from pacha.cards import describe_validation_error
    from pacha.errors import InvalidInputError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        what = "model card" if model.__name__ == "ModelCard" else "datasheet"
        raise InvalidInputError(f"invalid {what}: {describe_validation_error(exc)}") from None


def _names_a_file(source: Union[str, os.PathLike[str]], version: Optional[str]) -> bool:
    """Whether a recipe argument is a file rather than a registered reference: a path
    object, or text with a `/` or a `.toml` ending. A reference never contains either, so a
    file can never shadow one, and a missing file is reported as missing."""
    if version is not None:
        return False
    if not isinstance(source, str):
        return True
    return "/" in source or source.endswith(".toml") or (":" not in source and "@" not in source)


def _edge(
    kind: str, node: NodeLike, relation: str, params: Optional[Mapping[str, Any]] = None
) -> tuple[str, str, str]:
    """A lineage edge for `_core.Registry.register`: (target node, relation, params JSON)."""
    import json

    from pacha.lineage import node_text

    text = node_text(node)
    target = text if "/" in text else f"{kind}/{text}"
    values = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        return target, relation, json.dumps(values, allow_nan=False)
    except ValueError:
        raise InvalidInputError(
            f"{relation} parameters must be finite numbers or text, not NaN or infinity"
        ) from None


def _model_edges(
    parents: Sequence[NodeLike],
    relation: str,
    relation_params: Optional[Mapping[str, Any]],
    weights: Optional[Sequence[float]],
    datasets: Sequence[NodeLike],
    eval_datasets: Sequence[NodeLike],
    recipe: Optional[NodeLike],
) -> list[tuple[str, str, str]]:
    if isinstance(parents, str) or isinstance(datasets, str) or isinstance(eval_datasets, str):
        raise InvalidInputError("parents, datasets and eval_datasets are lists of references")
    if weights is not None and len(weights) != len(parents):
        raise InvalidInputError(
            f"{len(weights)} weight(s) for {len(parents)} parent(s): give one weight per parent"
        )
    edges = []
    for i, parent in enumerate(parents):
        params = dict(relation_params or {})
        if weights is not None:
            params["weight"] = weights[i]
        edges.append(_edge("model", parent, relation, params))
    edges += [_edge("dataset", d, "trained_on") for d in datasets]
    edges += [_edge("dataset", d, "evaluated_on") for d in eval_datasets]
    if recipe is not None:
        edges.append(_edge("recipe", recipe, "trained_with"))
    return edges


def _stage_text(stage: Union[Stage, str, None]) -> Optional[str]:
    # `Stage` is a str enum: its value is the text either way.
    return None if stage is None else str(getattr(stage, "value", stage))


def _tag_pairs(tags: Optional[Mapping[str, str]]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in (tags or {}).items()]


class Registry:
    """A pacha registry: ``Registry()`` opens the one configured (``$PACHA_REGISTRY``, else
    ``$PACHA_HOME``, else the config file, else ``~/.pacha``; see `pacha.config`).

    References are ``name:1.2.0``, ``name:latest``, ``name@production`` or ``name@champion``;
    every method that takes one also accepts a bare name plus ``version=``.
    """

    def __init__(
        self,
        path: Optional[PathLike] = None,
        *,
        metadata: Optional[PathLike] = None,
        objects: Optional[PathLike] = None,
        read_only: bool = False,
        create: bool = True,
    ) -> None:
        """Open the registry at ``path`` (default: as configured, see `pacha.config`),
        creating it unless ``create=False``. ``metadata`` is another name for ``path``;
        ``objects`` is where the bytes live (default: the registry directory's own store).
        A registry a team shares has ``metadata="postgresql://USER:PASSWORD@HOST:PORT/DB"``
        and ``objects="s3://BUCKET/PREFIX"`` (S3 credentials and endpoint from the
        ``AWS_*`` environment, as boto3 takes them); its tables are created on first use.

        A registry this user or file system may only read opens read-only
        (`read_only_reason` says why; writes raise `ReadOnlyRegistryError`);
        ``read_only=True`` opens it so on purpose and never changes anything."""
        location = registry_location(path, metadata=metadata, objects=objects)
        self._open(location, read_only=read_only, create=create)

    def _open(self, location: RegistryLocation, *, read_only: bool, create: bool) -> None:
        self._core = location.open(read_only=read_only, create=create)
        #: The registry directory; None for a shared registry (PostgreSQL and S3).
        self.path: Optional[Path] = self._core.root
        #: How messages name the registry: its directory, or its database's URL (password
        #: masked).
        self.location: str = self._core.label

    @classmethod
    def at(
        cls, location: RegistryLocation, *, read_only: bool = False, create: bool = True
    ) -> Registry:
        """The registry at a resolved `pacha.config.RegistryLocation` (as the command line
        resolves it, with the sources its messages name)."""
        registry = cls.__new__(cls)
        registry._open(location, read_only=read_only, create=create)
        return registry

    @property
    def read_only_reason(self) -> Optional[str]:
        """Why this registry may only be read here, or None when it may be written."""
        return self._core.read_only_reason

    def __repr__(self) -> str:
        return f"Registry({self.location!r})"

    @property
    def store(self) -> _core.ObjectStore:
        """The content-addressed object store under this registry."""
        return self._core.store

    # ---- models ----

    def register_model(
        self,
        name: str,
        path: PathLike,
        version: Optional[str] = None,
        *,
        bump: Optional[str] = None,
        description: Optional[str] = None,
        card: Union[ModelCard, Mapping[str, Any], PathLike, None] = None,
        metrics: Optional[Mapping[str, float]] = None,
        tags: Optional[Mapping[str, str]] = None,
        run: Optional[str] = None,
        parents: Sequence[NodeLike] = (),
        relation: str = "fine_tuned",
        relation_params: Optional[Mapping[str, Any]] = None,
        weights: Optional[Sequence[float]] = None,
        datasets: Sequence[NodeLike] = (),
        eval_datasets: Sequence[NodeLike] = (),
        recipe: Optional[NodeLike] = None,
        include_vcs: bool = False,
        progress: Optional[_core.Progress] = None,
    ) -> ModelVersion:
        """Register a model file or directory (a Hugging Face folder, say) as a new version.
        A directory's ``.git`` and ``__pycache__`` are left out unless ``include_vcs``
        (``.skipped`` on the result lists what was).

        Give ``version`` ("1.0.0") or ``bump`` ("major" | "minor" | "patch"). ``card`` is a
        `ModelCard`, a mapping, or a TOML/YAML/JSON/Markdown file; ``metrics`` go into it.

        Lineage is recorded in the same transaction: ``parents`` are the models this one was
        made from by ``relation`` (fine_tuned, distilled, merged, quantized, pruned) with
        ``relation_params`` (``{"method": "int8"}`` for quantized, ``{"temperature": 2.0}``
        for distilled, ...) and, for a merge, one of ``weights`` per parent; ``datasets`` it
        was trained on, ``eval_datasets`` it was evaluated on, the ``recipe`` it was trained
        with, and the ``run`` that produced it (which brings the run's recipe and datasets).
        """
        from pacha.models import ModelCard, ModelVersion

        model_card = _document(card, ModelCard)
        if metrics or (model_card is not None and description and not model_card.description):
            # Rebuilt through validation (model_copy would skip it: a NaN metric must fail here).
            data = model_card.model_dump() if model_card is not None else {}
            if metrics:
                data["metrics"] = {**data.get("metrics", {}), **metrics}
            if description and not data.get("description"):
                data["description"] = description
            model_card = _validated(ModelCard, data)
        return self._register(
            "model",
            name,
            path,
            version,
            bump,
            description,
            model_card,
            tags,
            progress,
            ModelVersion,
            run,
            _model_edges(
                parents, relation, relation_params, weights, datasets, eval_datasets, recipe
            ),
            include_vcs,
        )

    def get_model(self, ref: str, version: Optional[str] = None) -> ModelVersion:
        """One model version, with its stage history."""
        from pacha.models import ModelVersion

        return self._get("model", ref, version, ModelVersion)

    def list_models(self) -> list[NameSummary]:
        """Every model name with its number of versions and latest release."""
        return self._names("model")

    def list_model_versions(
        self,
        name: Optional[str] = None,
        *,
        stage: Union[Stage, str, None] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> list[ModelVersion]:
        """Versions in precedence order (1.2.0 before 1.10.0), optionally filtered."""
        from pacha.models import ModelVersion

        return self._versions("model", name, stage, tags, ModelVersion)

    def download_model(
        self,
        ref: str,
        output: PathLike,
        version: Optional[str] = None,
        *,
        force: bool = False,
        progress: Optional[_core.Progress] = None,
    ) -> ModelVersion:
        """Write a model to ``output`` (verified while streaming; never clobbers unless
        ``force``)."""
        from pacha.models import ModelVersion

        return self._download("model", ref, output, version, force, progress, ModelVersion)

    def stage_model(
        self,
        ref: str,
        stage: Union[Stage, str],
        version: Optional[str] = None,
        *,
        archive_existing: bool = False,
    ) -> ModelVersion:
        """Move a model version to ``stage``; with ``archive_existing``, the version currently
        in production is archived in the same transaction."""
        from pacha.models import ModelVersion

        return self._stage("model", ref, stage, version, archive_existing, ModelVersion)

    def alias_model(self, ref: str, alias: str, version: Optional[str] = None) -> ModelVersion:
        """Point ``alias`` (e.g. "champion") at a version, moving it if it pointed elsewhere."""
        from pacha.models import ModelVersion

        return self._alias("model", ref, alias, version, ModelVersion)

    def delete_model_alias(self, name: str, alias: str) -> None:
        self._core.delete_alias("model", name, alias)

    def tag_model(
        self, ref: str, tags: Mapping[str, str], version: Optional[str] = None
    ) -> ModelVersion:
        """Set key=value tags on a version (existing keys are overwritten)."""
        from pacha.models import ModelVersion

        return self._tag("model", ref, tags, version, ModelVersion)

    def model_card(self, ref: str, version: Optional[str] = None) -> str:
        """The version's model card as Markdown with YAML front matter (Hugging Face style)."""
        from pacha.cards import render_model_card
        from pacha.models import ModelCard

        model = self.get_model(ref, version)
        card = model.card or ModelCard(description=model.description)
        return render_model_card(card, model.name, model.version)

    # ---- datasets ----

    def register_dataset(
        self,
        name: str,
        path: PathLike,
        version: Optional[str] = None,
        *,
        bump: Optional[str] = None,
        description: Optional[str] = None,
        datasheet: Union[Datasheet, Mapping[str, Any], PathLike, None] = None,
        purpose: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        derived_from: Sequence[NodeLike] = (),
        transformation: Optional[str] = None,
        include_vcs: bool = False,
        progress: Optional[_core.Progress] = None,
    ) -> DatasetVersion:
        """Register a dataset file or directory as a new version. ``purpose`` is the quick
        form of a datasheet; ``datasheet`` the full one (object, mapping or file).
        ``derived_from`` names the datasets this one was made from, by ``transformation``
        (free text: "dedup + language filter"), recorded as lineage."""
        from pacha.models import DatasetVersion, Datasheet

        sheet = _document(datasheet, Datasheet)
        if purpose:
            data = sheet.model_dump() if sheet is not None else {}
            sheet = _validated(Datasheet, {**data, "purpose": purpose})
        return self._register(
            "dataset",
            name,
            path,
            version,
            bump,
            description,
            sheet,
            tags,
            progress,
            DatasetVersion,
            None,
            [
                _edge("dataset", d, "derived_from", {"transformation": transformation})
                for d in derived_from
            ],
            include_vcs,
        )

    def get_dataset(self, ref: str, version: Optional[str] = None) -> DatasetVersion:
        from pacha.models import DatasetVersion

        return self._get("dataset", ref, version, DatasetVersion)

    def list_datasets(self) -> list[NameSummary]:
        return self._names("dataset")

    def list_dataset_versions(
        self,
        name: Optional[str] = None,
        *,
        stage: Union[Stage, str, None] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> list[DatasetVersion]:
        from pacha.models import DatasetVersion

        return self._versions("dataset", name, stage, tags, DatasetVersion)

    def download_dataset(
        self,
        ref: str,
        output: PathLike,
        version: Optional[str] = None,
        *,
        force: bool = False,
        progress: Optional[_core.Progress] = None,
    ) -> DatasetVersion:
        from pacha.models import DatasetVersion

        return self._download("dataset", ref, output, version, force, progress, DatasetVersion)

    def stage_dataset(
        self,
        ref: str,
        stage: Union[Stage, str],
        version: Optional[str] = None,
        *,
        archive_existing: bool = False,
    ) -> DatasetVersion:
        from pacha.models import DatasetVersion

        return self._stage("dataset", ref, stage, version, archive_existing, DatasetVersion)

    def alias_dataset(self, ref: str, alias: str, version: Optional[str] = None) -> DatasetVersion:
        from pacha.models import DatasetVersion

        return self._alias("dataset", ref, alias, version, DatasetVersion)

    def delete_dataset_alias(self, name: str, alias: str) -> None:
        self._core.delete_alias("dataset", name, alias)

    def tag_dataset(
        self, ref: str, tags: Mapping[str, str], version: Optional[str] = None
    ) -> DatasetVersion:
        from pacha.models import DatasetVersion

        return self._tag("dataset", ref, tags, version, DatasetVersion)

    # ---- recipes ----

    def register_recipe(self, path: PathLike) -> RecipeVersion:
        """Register a TOML recipe file; its name and version come from the file. A recipe
        with errors is refused with `RecipeValidationError` listing every problem."""
        import tempfile
        from pathlib import Path

        from pacha.models import RecipeVersion
        from pacha.recipes import (
            RecipeValidationError,
            read_recipe_file,
            recipe_json,
            validate_recipe_data,
        )

        text, data = read_recipe_file(path)
        problems = validate_recipe_data(data, self._dataset_problem)
        if any(p.severity == "error" for p in problems):
            raise RecipeValidationError(os.fspath(path), problems)
        # Stored from a private copy of the validated text, so that the bytes kept are the
        # bytes checked even if the file changes meanwhile.
        with tempfile.TemporaryDirectory(prefix="pacha-recipe-") as tmp:
            copy = Path(tmp) / "recipe.toml"
            copy.write_bytes(text.encode("utf-8"))
            info, _ = self._core.register(
                "recipe",
                str(data["name"]),
                copy,
                version=str(data["version"]),
                description=data.get("description"),
                card=recipe_json(data),
                actor=_actor(),
            )
        return self._with_history(info, RecipeVersion)

    def get_recipe(self, ref: str, version: Optional[str] = None) -> RecipeVersion:
        """One recipe version; ``.recipe`` is the parsed form."""
        from pacha.models import RecipeVersion

        return self._get("recipe", ref, version, RecipeVersion)

    def recipe_text(self, ref: str, version: Optional[str] = None) -> str:
        """The recipe's original TOML text, byte for byte as registered."""
        from pacha.recipes import MAX_RECIPE_BYTES

        info = self._core.resolve("recipe", ref, version)
        return self.store.get_bytes(info.digest, MAX_RECIPE_BYTES).decode("utf-8")

    def list_recipes(self) -> list[NameSummary]:
        return self._names("recipe")

    def list_recipe_versions(self, name: Optional[str] = None) -> list[RecipeVersion]:
        from pacha.models import RecipeVersion

        return self._versions("recipe", name, None, None, RecipeVersion)

    def validate_recipe(
        self, source: Union[str, PathLike], version: Optional[str] = None
    ) -> list[RecipeProblem]:
        """Every problem of a recipe file, or of a registered recipe (``NAME:VERSION`` or a
        name plus ``version``); errors first. Dataset references are checked against this
        registry."""
        from pacha.recipes import validate_recipe_data

        return validate_recipe_data(self._recipe_data(source, version), self._dataset_problem)

    def diff_recipes(
        self, a: Union[str, PathLike], b: Union[str, PathLike]
    ) -> list[tuple[str, Any, Any]]:
        """``(key path, value in a, value in b)`` for every setting that differs; each side
        is a recipe file or a registered recipe reference."""
        from pacha.recipes import recipe_diff

        return recipe_diff(self._recipe_data(a, None), self._recipe_data(b, None))

    def _recipe_data(self, source: Union[str, PathLike], version: Optional[str]) -> dict[str, Any]:

        from pacha.recipes import read_recipe_file

        if _names_a_file(source, version):
            return read_recipe_file(source)[1]
        info = self._core.resolve("recipe", os.fspath(source), version)
        return stored_object(info.card, f"recipe {info.name}:{info.version}") or {}

    def _dataset_problem(self, ref: str) -> Optional[str]:
        """None if the dataset reference resolves here, else why not."""
        from pacha.errors import InvalidInputError

        try:
            self._core.resolve("dataset", ref)
        except (NotFoundError, InvalidInputError) as exc:
            return str(exc)
        return None

    # ---- experiment runs ----

    def start_run(
        self,
        recipe: Optional[str] = None,
        version: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
    ) -> Run:
        """Start a run, optionally of a registered recipe (``"name:1.0.0"``, or a name plus
        ``version``); its hyperparameters merged with ``params`` are recorded, with the
        environment (git commit and dirty flag, host, user, versions, command, hardware).
        Use it as a context manager::

            with registry.start_run("bert-finetune:1.0.0", params={"learning_rate": 1e-5}) as run:
                run.log_metric("loss", 0.31, step=10)
        """
        import json

        from pacha.errors import InvalidInputError
        from pacha.runs import Run, capture_environment, new_run_id

        merged: dict[str, Any] = {}
        exact: Optional[str] = None
        used: list[tuple[str, Optional[str]]] = []
        if recipe is not None:
            recipe_info = self._core.resolve("recipe", recipe, version)
            # The exact version, so that parameters and the recorded recipe cannot disagree.
            exact = f"{recipe_info.name}:{recipe_info.version}"
            what = f"recipe {recipe_info.name}:{recipe_info.version}"
            document = stored_object(recipe_info.card, what) or {}
            merged.update(document.get("hyperparameters") or {})
            # The recipe's datasets become the run's `used` lineage, with their split.
            for split, ref in (document.get("data") or {}).items():
                if isinstance(ref, str):
                    used.append((ref, split))
        merged.update(params or {})
        try:
            params_text = json.dumps(merged, allow_nan=False, default=str)
        except ValueError:
            raise InvalidInputError(
                "run parameters must be finite numbers (no NaN or infinity)"
            ) from None
        actor = _actor()
        run_info = self._core.create_run(
            new_run_id(),
            exact,
            None,
            params_text,
            json.dumps(capture_environment(actor), default=str),
            actor,
            used,
        )
        return Run(self, run_info)

    def log_run_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: Optional[int] = None
    ) -> int:
        """Log metrics to a running run by id (or unique prefix), e.g. from another process.
        Without ``step``, all values go to the step after the run's highest one (chosen
        atomically, so concurrent loggers never share a step). Returns the step used."""
        import time

        now = time.time()
        values = [(name, float(value)) for name, value in metrics.items()]
        if step is None:
            return self._core.log_at_next_step(run_id, values, now)
        self._core.log_metrics(run_id, [(name, step, value, now) for name, value in values])
        return step

    def finish_run(
        self, run_id: str, status: str = "completed", error: Optional[str] = None
    ) -> RunRecord:
        """End a running run as completed, failed or cancelled."""
        info = self._core.finish_run(run_id, status, error)
        return self.get_run(info.id)

    def get_run(self, run_id: str) -> RunRecord:
        """A run by id or unique prefix (at least 6 characters), with final metric values."""
        return self._runs([self._core.resolve_run(run_id)])[0]

    def list_runs(
        self,
        recipe: Optional[str] = None,
        version: Optional[str] = None,
        *,
        status: Optional[str] = None,
    ) -> list[RunRecord]:
        """Runs, oldest first; of one recipe version and/or one status if given."""
        return self._runs(self._core.list_runs(recipe, version, status))

    def run_metrics(self, run_id: str) -> list[tuple[str, int, float, float]]:
        """Every point of a run: ``(name, step, value, unix time)``, by name then step."""
        return self._core.run_metrics(run_id)

    def best_run(
        self,
        recipe: str,
        metric: str,
        version: Optional[str] = None,
        *,
        minimize: bool = False,
    ) -> Optional[RunRecord]:
        """Among completed runs of a recipe version, the one whose ``metric`` at its highest
        step is highest (lowest with ``minimize``); None if no completed run logged it."""
        best = self._core.best_run(recipe, version, metric, minimize)
        return self._runs([best[0]])[0] if best else None

    def _runs(self, infos: list[_core.RunInfo]) -> list[RunRecord]:

        from pacha.models import RunRecord

        finals: dict[str, dict[str, tuple[int, float]]] = {}
        for run_id, name, step, value in self._core.final_metrics([i.id for i in infos]):
            finals.setdefault(run_id, {})[name] = (step, value)
        records = []
        for info in infos:
            last = finals.get(info.id, {})
            records.append(
                RunRecord(
                    id=info.id,
                    recipe=info.recipe,
                    status=info.status,
                    params=stored_object(info.params, f"parameters of run {info.id}") or {},
                    environment=stored_object(info.environment, f"environment of run {info.id}")
                    or {},
                    started_at=_timestamp(info.started_at),
                    finished_at=_timestamp(info.finished_at) if info.finished_at else None,
                    error=info.error,
                    created_by=info.created_by,
                    last_seen=_timestamp(info.heartbeat_at) if info.heartbeat_at else None,
                    metrics={name: value for name, (_, value) in last.items()},
                    metric_steps={name: step for name, (step, _) in last.items()},
                    artifacts={
                        name: digest for name, digest, _ in self._core.run_artifacts(info.id)
                    },
                )
            )
        return records

    # ---- lineage ----

    def lineage(
        self,
        node: NodeLike,
        direction: str = "both",
        *,
        depth: Optional[int] = None,
        relations: Iterable[str] = (),
        kinds: Iterable[str] = (),
    ) -> Lineage:
        """Ancestors (``"up"``: what ``node`` came from), descendants (``"down"``: what was
        made from it) or both, breadth first, at most ``depth`` edges away. ``relations``
        limits the edges followed (``["fine_tuned", "quantized"]``); ``kinds`` limits the
        nodes reported (``["model"]``) while still walking through the others.

        ``node`` is ``"model/bert:1.0.0"``, ``"dataset/imdb@production"``, ``"run/3fa9c1"``,
        ``"bert:1.0.0"`` when only one kind has that name, or a version or run object."""
        from pacha.lineage import Lineage, node_text

        if depth is not None and (isinstance(depth, bool) or depth < 0):
            raise InvalidInputError(f"depth must be a whole number of edges ≥ 0, not {depth!r}")
        if depth is not None and depth > 0xFFFF_FFFF:
            depth = None  # farther than any graph reaches: no limit (the core counts in u32)
        result = self._core.lineage(node_text(node), direction, depth, list(relations), list(kinds))
        return Lineage(result, direction)

    def ancestors(self, node: NodeLike, **options: Any) -> Lineage:
        """What ``node`` came from, transitively (see `lineage` for the options)."""
        return self.lineage(node, "up", **options)

    def descendants(self, node: NodeLike, **options: Any) -> Lineage:
        """What was made from ``node``, transitively (see `lineage` for the options)."""
        return self.lineage(node, "down", **options)

    def provenance(self, dataset: NodeLike, **options: Any) -> Lineage:
        """Where a dataset came from: its ancestors."""
        from pacha.lineage import node_text

        text = node_text(dataset)
        return self.ancestors(text if "/" in text else f"dataset/{text}", **options)

    def lineage_path(self, a: NodeLike, b: NodeLike) -> Lineage:
        """The shortest chain of edges between two nodes, whichever came from the other;
        `NotFoundError` if neither did."""
        from pacha.lineage import Lineage, node_text

        return Lineage(self._core.lineage_path(node_text(a), node_text(b)), "up")

    def lineage_roots(self, node: Optional[NodeLike] = None) -> Lineage:
        """Sources (nodes made from nothing recorded) among ``node``'s ancestors, or in the
        whole graph."""
        return self._lineage_nodes("roots", node)

    def lineage_leaves(self, node: Optional[NodeLike] = None) -> Lineage:
        """Nodes nothing was made from, among ``node``'s descendants or in the whole graph."""
        return self._lineage_nodes("leaves", node)

    def lineage_order(self, node: Optional[NodeLike] = None) -> Lineage:
        """``node`` and its ancestors (or the whole graph) in topological order: everything
        before what was made from it."""
        return self._lineage_nodes("topological", node)

    def _lineage_nodes(self, query: str, node: Optional[NodeLike]) -> Lineage:
        from pacha.lineage import Lineage, node_text

        return Lineage(self._core.lineage_nodes(query, node_text(node) if node else None))

    def add_edge(
        self,
        from_node: NodeLike,
        to_node: NodeLike,
        relation: str,
        params: Optional[Mapping[str, Any]] = None,
    ) -> bool:
        """Record that ``from_node`` was made from ``to_node`` by ``relation``. Both must
        exist; an edge that would close a cycle raises `LineageCycleError` naming it.
        Returns False if the same edge was already recorded."""
        import json

        from pacha.lineage import node_text

        try:
            text = json.dumps(dict(params or {}), allow_nan=False)
        except ValueError:
            raise InvalidInputError(
                f"{relation} parameters must be finite numbers or text, not NaN or infinity"
            ) from None
        return self._core.add_edge(
            node_text(from_node), node_text(to_node), relation, text, _actor()
        )

    def impact(self, node: NodeLike) -> list[ImpactEntry]:
        """Every model downstream of ``node`` that still exists, with its stage: production
        first, then staging, development, archived. "Which production models were trained
        on the dataset we just found a leak in?" is ``impact("dataset/leaky:1.0.0")``."""
        from pacha.lineage import node_text
        from pacha.models import ImpactEntry, ModelVersion

        return [
            ImpactEntry(model=_record(info, ModelVersion), depth=depth)
            for info, depth in self._core.impact(node_text(node))
        ]

    # ---- deletion ----

    def delete_model(
        self, ref: str, version: Optional[str] = None, *, force: bool = False
    ) -> ModelVersion:
        """Delete a model version. A version in production needs ``force``. Its lineage node
        stays as a tombstone and its number is never reused; its bytes stay until `gc`."""
        from pacha.models import ModelVersion

        return _record(self._core.delete("model", ref, version, force), ModelVersion)

    def delete_dataset(
        self, ref: str, version: Optional[str] = None, *, force: bool = False
    ) -> DatasetVersion:
        """Delete a dataset version (see `delete_model`)."""
        from pacha.models import DatasetVersion

        return _record(self._core.delete("dataset", ref, version, force), DatasetVersion)

    def gc(self, *, grace: float = DEFAULT_GC_GRACE, dry_run: bool = False) -> GcResult:
        """Remove objects that no version, run artifact or tree references, and temporary
        files of interrupted writes, once older than ``grace`` seconds (default one day, as
        git spares recent unreachable objects). Safe while other processes register: they
        wait for the sweep, and it waits for registrations in flight. A shared registry
        (PostgreSQL + S3) collects in two phases: a run marks what it found unreferenced, and
        a later run removes what is still unreferenced then (``objects_marked``)."""
        from pacha.models import GcResult

        removed, freed, temps, temp_bytes, young, kept, marked = self._core.gc(
            float(grace), dry_run
        )
        return GcResult(
            objects_removed=removed,
            bytes_freed=freed,
            temp_files_removed=temps,
            temp_bytes_freed=temp_bytes,
            young_objects_kept=young,
            objects_kept=kept,
            objects_marked=marked,
            dry_run=dry_run,
        )

    # ---- plain records (JSON-ready dicts, no pydantic): what the CLI's read commands use ----

    def version_record(self, kind: Kind, ref: str, version: Optional[str] = None) -> dict[str, Any]:
        """One version, with its history, in its JSON form (see `pacha.records`)."""
        info = self._core.resolve(kind, ref, version)
        return records.from_core(info, self._core.history(info.id))

    def version_records(
        self,
        kind: Kind,
        name: Optional[str] = None,
        *,
        stage: Union[Stage, str, None] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> list[dict[str, Any]]:
        """Versions in precedence order, in their JSON form (without history)."""
        infos = self._core.list_versions(kind, name, _stage_text(stage), _tag_pairs(tags))
        return [records.from_core(info, listing=True) for info in infos]

    def name_records(self, kind: Kind) -> list[dict[str, Any]]:
        """Every name of a kind with its number of versions and latest release."""
        return [
            {"name": n.name, "versions": n.versions, "latest": n.latest}
            for n in self._core.list_names(kind)
        ]

    # ---- the whole registry ----

    def stats(self) -> RegistryStats:
        from pacha.models import RegistryStats

        s = self._core.stats()
        return RegistryStats(
            models=s.models,
            datasets=s.datasets,
            recipes=s.recipes,
            versions=s.versions,
            runs=s.runs,
            objects=s.objects,
            stored_bytes=s.stored_bytes,
            logical_bytes=s.logical_bytes,
        )

    def verify(
        self, refs: Optional[Iterable[str]] = None, *, progress: Optional[_core.Progress] = None
    ) -> VerifyResult:
        """Re-hash the objects of the given versions (default: every version) and report each
        problem with every ``name:version`` it breaks. References are looked up among models
        and datasets."""
        from pacha.models import VerifyProblem, VerifyResult

        ids: Optional[list[int]] = None
        if refs is not None:
            ids = []
            for ref in refs:
                found = []
                for kind in ("model", "dataset"):
                    try:
                        found.append(self._core.resolve(kind, ref).id)
                    except NotFoundError:
                        continue
                if not found:
                    raise NotFoundError(
                        f"no model or dataset {ref!r}; "
                        "`pacha model list` and `pacha data list` show what exists"
                    )
                ids += found
        report = self._core.verify(ids, progress)
        problems = [
            VerifyProblem(
                digest=p.problem.digest,
                kind=p.problem.kind,
                path=p.problem.path,
                detail=p.problem.detail,
                breaks=list(p.users),
            )
            for p in report.problems
        ]
        return VerifyResult(
            ok=not problems, checked=report.checked, bytes=report.bytes, problems=problems
        )

    def repair(
        self,
        ref: str,
        source: PathLike,
        version: Optional[str] = None,
        *,
        include_vcs: bool = False,
        progress: Optional[_core.Progress] = None,
    ) -> RepairResult:
        """Repair the stored bytes of a model or dataset version that `verify` found damaged
        or missing, from ``source``: a copy of the file or directory that was registered.
        Its digest must be the version's (anything else is refused, naming both); metadata is
        never changed. The reference is looked up among models, then datasets."""
        from pacha.models import RepairResult, VerifyProblem

        kind = "model"
        try:
            self._core.resolve("model", ref, version)
        except NotFoundError:
            kind = "dataset"
        info, damaged, remaining = self._core.repair(
            kind, ref, version, os.fspath(source), include_vcs=include_vcs, progress=progress
        )
        return RepairResult(
            version=f"{kind}/{info.name}:{info.version}",
            damaged=damaged,
            remaining=[
                VerifyProblem(
                    digest=p.problem.digest,
                    kind=p.problem.kind,
                    path=p.problem.path,
                    detail=p.problem.detail,
                    breaks=list(p.users),
                )
                for p in remaining
            ],
        )

    # ---- shared by models and datasets ----

    def _register(
        self,
        kind: str,
        name: str,
        path: PathLike,
        version: Optional[str],
        bump: Optional[str],
        description: Optional[str],
        document: Union[ModelCard, Datasheet, None],
        tags: Optional[Mapping[str, str]],
        progress: Optional[_core.Progress],
        cls: type[V],
        run: Optional[str] = None,
        lineage: Optional[list[tuple[str, str, str]]] = None,
        include_vcs: bool = False,
    ) -> V:
        info, skipped = self._core.register(
            kind,
            name,
            os.fspath(path),
            version=version,
            bump=bump,
            description=description,
            card=document.model_dump_json(exclude_defaults=True) if document is not None else None,
            tags=_tag_pairs(tags),
            actor=_actor(),
            run=run,
            lineage=lineage or [],
            include_vcs=include_vcs,
            progress=progress,
        )
        registered = self._with_history(info, cls)
        registered._set_skipped(skipped)
        return registered

    def _with_history(self, info: _core.VersionInfo, cls: type[V]) -> V:
        from pacha.models import Stage, StageTransition

        history = [
            StageTransition(
                from_stage=Stage(t.from_stage) if t.from_stage else None,
                to_stage=Stage(t.to_stage),
                at=_timestamp(t.at),
                by=t.by,
            )
            for t in self._core.history(info.id)
        ]
        return _record(info, cls, history)

    def _get(self, kind: str, ref: str, version: Optional[str], cls: type[V]) -> V:
        return self._with_history(self._core.resolve(kind, ref, version), cls)

    def _names(self, kind: Kind) -> list[NameSummary]:
        from pacha.models import NameSummary

        return [NameSummary(**n) for n in self.name_records(kind)]

    def _versions(
        self,
        kind: str,
        name: Optional[str],
        stage: Union[Stage, str, None],
        tags: Optional[Mapping[str, str]],
        cls: type[V],
    ) -> list[V]:
        rows = self._core.list_version_rows(kind, name, _stage_text(stage), _tag_pairs(tags))
        return _records_from_rows(rows, cls)

    def _download(
        self,
        kind: str,
        ref: str,
        output: PathLike,
        version: Optional[str],
        force: bool,
        progress: Optional[_core.Progress],
        cls: type[V],
    ) -> V:
        info, removed = self._core.download(
            kind, ref, version, os.fspath(output), overwrite=force, progress=progress
        )
        downloaded = _record(info, cls)
        downloaded._set_removed(removed)
        return downloaded

    def _stage(
        self,
        kind: str,
        ref: str,
        stage: Union[Stage, str],
        version: Optional[str],
        archive_existing: bool,
        cls: type[V],
    ) -> V:
        target = _stage_text(stage)
        assert target is not None
        info = self._core.transition(
            kind, ref, version, target, archive_existing=archive_existing, actor=_actor()
        )
        return self._with_history(info, cls)

    def _alias(self, kind: str, ref: str, alias: str, version: Optional[str], cls: type[V]) -> V:
        return _record(self._core.set_alias(kind, ref, version, alias), cls)

    def _tag(
        self, kind: str, ref: str, tags: Mapping[str, str], version: Optional[str], cls: type[V]
    ) -> V:
        return _record(self._core.set_tags(kind, ref, version, _tag_pairs(tags)), cls)
