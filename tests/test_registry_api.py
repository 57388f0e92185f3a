"""The registry through `pacha.Registry`: versions, references, stages, aliases, tags, cards,
directories, verification, error paths and concurrent writers."""

from __future__ import annotations

import getpass
import json
import multiprocessing
import os
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

import pacha
from conftest import Backend
from pacha import Stage
from support import (
    make_hf_folder,
    object_files,
    stored_objects,
    tree_listing,
    write_pattern,
)

# ---- helpers ----


@pytest.fixture
def reg(backend: Backend) -> pacha.Registry:
    return backend.open()


def blob(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def snapshot(registry: Path) -> tuple[Any, ...]:
    """Everything a refused operation must leave as it was."""
    r = pacha.Registry(registry)
    versions = [(v.name, v.version, v.stage, v.digest) for v in r.list_model_versions()]
    datasets = [(v.name, v.version) for v in r.list_dataset_versions()]
    return r.stats().model_dump(), object_files(registry), versions, datasets


def object_path(registry: Path, digest: str) -> Path:
    return registry / "objects" / digest[:2] / digest


# ---- 1. semantic versions ----


@pytest.mark.parametrize(
    "bad",
    [
        "1.0",
        "01.0.0",
        "1.01.0",
        "1.0.0-",
        "1.0.0-01",
        "1.0.0+",
        "1.0.0-a..b",
        "1.0.0+a..b",
        "1.0.0-a.",
        "1.0.0+.x",
        "",
        "v1.0.0",
    ],
)
def test_parse_version_rejects_invalid(bad: str) -> None:
    with pytest.raises(pacha.InvalidInputError) as info:
        pacha.parse_version(bad)
    message = str(info.value)
    assert "MAJOR.MINOR.PATCH" in message
    assert "1.0.0" in message


def test_invalid_version_is_refused_on_register(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    with pytest.raises(pacha.InvalidInputError, match=r"MAJOR\.MINOR\.PATCH"):
        reg.register_model("m", f, "1.0")
    assert reg.stats().versions == 0
    assert stored_objects(reg) == []


_NUMBER = st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1)).map(str)
_PRE_NUMBER = st.one_of(st.integers(0, 12), st.integers(0, 10**25)).map(str)
_IDENT_CHARS = "0123456789abcxyzABCXYZ-"
_ALNUM = st.one_of(
    st.sampled_from(["alpha", "beta", "rc", "-", "a-b", "0a", "x-1", "RC", "Beta"]),
    st.text(_IDENT_CHARS, min_size=1, max_size=6).filter(lambda s: not s.isdigit()),
)
_PRE_IDENT = st.one_of(_PRE_NUMBER, _ALNUM)
_BUILD_IDENT = st.one_of(
    st.sampled_from(["build", "001", "sha-5114f85", "0"]),
    st.text(_IDENT_CHARS, min_size=1, max_size=6),
)


@st.composite
def semver_strings(draw: st.DrawFn) -> str:
    """Valid SemVer 2.0.0 strings, with optional pre-release and build parts."""
    text = ".".join(draw(_NUMBER) for _ in range(3))
    pre = draw(st.lists(_PRE_IDENT, max_size=4))
    build = draw(st.lists(_BUILD_IDENT, max_size=3))
    if pre:
        text += "-" + ".".join(pre)
    if build:
        text += "+" + ".".join(build)
    return text


@given(semver_strings())
def test_parse_version_accepts_valid_semver(text: str) -> None:
    assert pacha.parse_version(text) == text
    assert str(semver.Version.parse(text)) == text  # the strategy itself is valid SemVer


@given(semver_strings(), semver_strings())
def test_compare_versions_agrees_with_semver(a: str, b: str) -> None:
    expected = semver.Version.parse(a).compare(b)
    assert pacha.compare_versions(a, b) == expected
    assert pacha.compare_versions(b, a) == -expected


@given(semver_strings(), st.lists(_BUILD_IDENT, min_size=1, max_size=2))
def test_compare_versions_ignores_build_metadata(a: str, build: list[str]) -> None:
    base = a.split("+", 1)[0]
    assert pacha.compare_versions(base, f"{base}+{'.'.join(build)}") == 0


SPEC_CHAIN = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.2.0",
    "1.10.0",
]


def test_listing_is_in_precedence_order(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    shuffled = ["1.10.0", "1.0.0", "1.0.0-beta.11", "1.2.0", "1.0.0-alpha", "1.0.0-rc.1"]
    shuffled += ["1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-alpha.1", "1.0.0-beta"]
    for version in shuffled:
        reg.register_model("m", f, version)
    assert [v.version for v in reg.list_model_versions("m")] == SPEC_CHAIN


def test_latest_skips_pre_releases(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    for version in ["1.2.0", "1.10.0", "2.0.0-rc.1", "1.9.0"]:
        reg.register_model("m", f, version)
    assert reg.get_model("m:latest").version == "1.10.0"
    assert reg.get_model("m", version="latest").version == "1.10.0"
    [summary] = reg.list_models()
    assert (summary.name, summary.versions, summary.latest) == ("m", 4, "1.10.0")


def test_latest_with_only_pre_releases_is_not_found(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    reg.register_model("pre", f, "1.0.0-rc.1")
    with pytest.raises(pacha.NotFoundError, match="pre"):
        reg.get_model("pre:latest")
    assert reg.list_models()[0].latest is None


@pytest.mark.parametrize(
    ("part", "first"), [("major", "1.0.0"), ("minor", "0.1.0"), ("patch", "0.0.1")]
)
def test_bump_for_the_first_version(
    reg: pacha.Registry, tmp_path: Path, part: str, first: str
) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    assert reg.register_model("fresh", f, bump=part).version == first
    assert [v.version for v in reg.list_model_versions("fresh")] == [first]


def test_bump_picks_the_next_version_by_precedence(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    reg.register_model("m", f, "1.10.0")
    reg.register_model("m", f, "1.2.0")  # registered later, lower precedence
    assert reg.register_model("m", f, bump="patch").version == "1.10.1"
    assert reg.register_model("m", f, bump="minor").version == "1.11.0"
    assert reg.register_model("m", f, bump="major").version == "2.0.0"
    assert reg.register_model("m", f, bump="patch").version == "2.0.1"
    assert reg.get_model("m:latest").version == "2.0.1"


def test_bump_rejects_unknown_part(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"weights")
    with pytest.raises(pacha.InvalidInputError, match="major"):
        reg.register_model("m", f, bump="huge")
    assert reg.stats().versions == 0
    assert stored_objects(reg) == []


# ---- 2. references ----


@pytest.fixture
def three_versions(reg: pacha.Registry, tmp_path: Path) -> dict[str, bytes]:
    """m:1.0.0 in staging, m:1.1.0 (latest), m:2.0.0-rc.1 aliased 'champion'."""
    contents = {"1.0.0": b"one", "1.1.0": b"one point one", "2.0.0-rc.1": b"two rc"}
    for version, data in contents.items():
        reg.register_model("m", blob(tmp_path, f"m-{version}", data), version)
    reg.stage_model("m:1.0.0", "staging")
    reg.alias_model("m:2.0.0-rc.1", "champion")
    return contents


REF_FORMS = [
    (("m:1.1.0", None), "1.1.0"),
    (("m:latest", None), "1.1.0"),
    (("m@staging", None), "1.0.0"),
    (("m@champion", None), "2.0.0-rc.1"),
    (("m", "2.0.0-rc.1"), "2.0.0-rc.1"),
]


@pytest.mark.parametrize(("ref", "expected"), REF_FORMS)
def test_every_reference_form_on_get_download_tag_stage(
    reg: pacha.Registry,
    tmp_path: Path,
    three_versions: dict[str, bytes],
    ref: tuple[str, Any],
    expected: str,
) -> None:
    name, version = ref
    assert reg.get_model(name, version).version == expected

    out = tmp_path / "out" / "model.bin"
    assert reg.download_model(name, out, version).version == expected
    assert out.read_bytes() == three_versions[expected]

    tagged = reg.tag_model(name, {"checked": "yes"}, version)
    assert (tagged.version, tagged.tags) == (expected, {"checked": "yes"})
    others = [v for v in reg.list_model_versions("m") if v.version != expected]
    assert all("checked" not in v.tags for v in others)

    moved = reg.stage_model(name, "archived", version)
    assert (moved.version, moved.stage) == (expected, Stage.ARCHIVED)
    assert reg.get_model(f"m:{expected}").stage == Stage.ARCHIVED


def test_reference_with_both_forms_or_no_version_is_refused(
    reg: pacha.Registry, three_versions: dict[str, bytes]
) -> None:
    with pytest.raises(pacha.InvalidInputError):
        reg.get_model("m:1.0.0", "1.0.0")
    with pytest.raises(pacha.InvalidInputError, match="NAME:VERSION"):
        reg.get_model("m")


# ---- 3. stages ----

ALLOWED = {
    Stage.DEVELOPMENT: {Stage.STAGING, Stage.ARCHIVED},
    Stage.STAGING: {Stage.DEVELOPMENT, Stage.PRODUCTION, Stage.ARCHIVED},
    Stage.PRODUCTION: {Stage.STAGING, Stage.ARCHIVED},
    Stage.ARCHIVED: {Stage.DEVELOPMENT},
}
PATH_TO = {
    Stage.DEVELOPMENT: [],
    Stage.STAGING: [Stage.STAGING],
    Stage.PRODUCTION: [Stage.STAGING, Stage.PRODUCTION],
    Stage.ARCHIVED: [Stage.ARCHIVED],
}
PAIRS = [(a, b) for a in Stage for b in Stage if a != b]


def test_stage_docstring_states_the_rules() -> None:
    doc = " ".join((Stage.__doc__ or "").split())
    assert "development→staging|archived" in doc
    assert "staging→development|production|archived" in doc
    assert "production→staging|archived" in doc
    assert "archived→development" in doc


@pytest.mark.parametrize(
    ("source", "target"), PAIRS, ids=[f"{a.value}-{b.value}" for a, b in PAIRS]
)
def test_stage_transition(
    reg: pacha.Registry, tmp_path: Path, source: Stage, target: Stage
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    for step in PATH_TO[source]:
        reg.stage_model("m:1.0.0", step)
    assert reg.get_model("m:1.0.0").stage == source
    history_before = reg.get_model("m:1.0.0").history
    if target in ALLOWED[source]:
        moved = reg.stage_model("m:1.0.0", target)
        assert moved.stage == target
        after = reg.get_model("m:1.0.0")
        assert after.stage == target
        last = after.history[-1]
        assert (last.from_stage, last.to_stage) == (source, target)
        assert len(after.history) == len(history_before) + 1
    else:
        with pytest.raises(pacha.InvalidTransitionError) as info:
            reg.stage_model("m:1.0.0", target)
        message = str(info.value)
        for allowed in ALLOWED[source]:
            assert allowed.value in message, message
        after = reg.get_model("m:1.0.0")
        assert after.stage == source
        assert after.history == history_before


def test_stage_accepts_the_enum_and_rejects_unknown_stages(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    assert reg.stage_model("m:1.0.0", Stage.STAGING).stage == Stage.STAGING
    with pytest.raises(pacha.InvalidInputError, match="production"):
        reg.stage_model("m:1.0.0", "live")
    assert reg.get_model("m:1.0.0").stage == Stage.STAGING


def test_archive_existing_and_history(reg: pacha.Registry, tmp_path: Path) -> None:
    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    f = blob(tmp_path, "m.bin", b"m")
    reg.register_model("m", f, "1.0.0")
    reg.register_model("m", f, "2.0.0")
    for version in ("1.0.0", "2.0.0"):
        reg.stage_model(f"m:{version}", "staging")
    reg.stage_model("m:1.0.0", "production")
    promoted = reg.stage_model("m:2.0.0", "production", archive_existing=True)
    assert promoted.stage == Stage.PRODUCTION
    old = reg.get_model("m:1.0.0")
    assert old.stage == Stage.ARCHIVED
    assert reg.get_model("m@production").version == "2.0.0"
    assert [v.version for v in reg.list_model_versions("m", stage="production")] == ["2.0.0"]

    end = datetime.now(timezone.utc) + timedelta(seconds=5)
    steps = [(t.from_stage, t.to_stage) for t in old.history]
    assert steps == [
        (None, Stage.DEVELOPMENT),
        (Stage.DEVELOPMENT, Stage.STAGING),
        (Stage.STAGING, Stage.PRODUCTION),
        (Stage.PRODUCTION, Stage.ARCHIVED),
    ]
    times = [t.at for t in old.history]
    assert times == sorted(times)
    assert all(start <= t <= end for t in times)
    assert {t.by for t in old.history} == {getpass.getuser()}
    assert [(t.from_stage, t.to_stage) for t in reg.get_model("m:2.0.0").history][-1] == (
        Stage.STAGING,
        Stage.PRODUCTION,
    )


# ---- 4. aliases and tags ----


def test_alias_moves_and_is_unique_per_name(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    for version in ("1.0.0", "2.0.0"):
        reg.register_model("m", f, version)
    reg.register_model("other", f, "5.0.0")
    assert reg.alias_model("m:1.0.0", "champion").aliases == ["champion"]
    assert reg.get_model("m@champion").version == "1.0.0"
    assert reg.alias_model("m", "champion", "2.0.0").version == "2.0.0"
    assert reg.get_model("m@champion").version == "2.0.0"
    assert reg.get_model("m:1.0.0").aliases == []
    assert reg.get_model("m:2.0.0").aliases == ["champion"]
    # The same alias on another name is independent.
    reg.alias_model("other:5.0.0", "champion")
    assert reg.get_model("other@champion").version == "5.0.0"
    assert reg.get_model("m@champion").version == "2.0.0"
    # Several aliases on one version.
    reg.alias_model("m:2.0.0", "candidate")
    assert reg.get_model("m:2.0.0").aliases == ["candidate", "champion"]


def test_alias_delete(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    reg.alias_model("m:1.0.0", "champion")
    reg.delete_model_alias("m", "champion")
    assert reg.get_model("m:1.0.0").aliases == []
    with pytest.raises(pacha.NotFoundError, match="champion"):
        reg.get_model("m@champion")
    with pytest.raises(pacha.NotFoundError, match="champion"):
        reg.delete_model_alias("m", "champion")


@pytest.mark.parametrize("alias", ["production", "staging", "development", "archived"])
def test_alias_that_is_a_stage_name_is_refused(
    reg: pacha.Registry, tmp_path: Path, alias: str
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    with pytest.raises(pacha.InvalidInputError, match="stage"):
        reg.alias_model("m:1.0.0", alias)
    assert reg.get_model("m:1.0.0").aliases == []


@pytest.mark.parametrize("alias", ["a/b", "..", "", "-x", "latest"])
def test_hostile_or_reserved_alias_is_refused(
    reg: pacha.Registry, tmp_path: Path, alias: str
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    with pytest.raises(pacha.InvalidInputError):
        reg.alias_model("m:1.0.0", alias)
    assert reg.get_model("m:1.0.0").aliases == []


def test_alias_of_unknown_version_is_not_found(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    with pytest.raises(pacha.NotFoundError, match=r"9\.9\.9"):
        reg.alias_model("m:9.9.9", "champion")


def test_tags_on_register_tag_and_list_filters(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    v1 = reg.register_model("m", f, "1.0.0", tags={"team": "nlp", "env": "dev"})
    assert v1.tags == {"team": "nlp", "env": "dev"}
    reg.register_model("m", f, "2.0.0", tags={"team": "cv"})
    reg.register_model("n", f, "1.0.0", tags={"team": "nlp"})
    updated = reg.tag_model("m:2.0.0", {"team": "nlp", "owner": "ana"})
    assert updated.tags == {"team": "nlp", "owner": "ana"}
    assert reg.get_model("m:2.0.0").tags == {"team": "nlp", "owner": "ana"}
    reg.stage_model("m:2.0.0", "staging")

    def refs(**kw: Any) -> list[str]:
        return [v.ref for v in reg.list_model_versions(**kw)]

    assert refs(tags={"team": "nlp"}) == ["m:1.0.0", "m:2.0.0", "n:1.0.0"]
    assert refs(tags={"team": "nlp"}, stage="staging") == ["m:2.0.0"]
    assert refs(tags={"team": "nlp"}, stage=Stage.DEVELOPMENT) == ["m:1.0.0", "n:1.0.0"]
    assert refs(name="m", tags={"team": "nlp", "env": "dev"}) == ["m:1.0.0"]
    assert refs(tags={"team": "cv"}) == []


@pytest.mark.parametrize(
    "tags", [{"bad key": "v"}, {"k": "line\nbreak"}], ids=["bad-key", "control-in-value"]
)
def test_invalid_tag_on_register_is_refused_and_nothing_stored(
    reg: pacha.Registry, registry: Path, tmp_path: Path, tags: dict[str, str]
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    before = snapshot(registry)
    new = write_pattern(tmp_path / "new.bin", 100_000, seed=6)
    with pytest.raises(pacha.InvalidInputError, match="tag"):
        reg.register_model("m", new, "2.0.0", tags=tags)
    assert snapshot(registry) == before


# ---- 5. model cards and datasheets ----

EXPECTED_CARD = pacha.ModelCard(
    description="A tiny test model",
    license="mit",
    metrics={"accuracy": 0.91, "f1": 0.88},
    primary_uses=["testing"],
    limitations=["tiny"],
    parent_model="base:1.0.0",
    training_date=datetime(2024, 5, 1).date(),
    extra={"team": "nlp"},
)

CARD_FILES = {
    "card.toml": """
description = "A tiny test model"
license = "mit"
primary_uses = ["testing"]
limitations = ["tiny"]
parent_model = "base:1.0.0"
training_date = 2024-05-01

[metrics]
accuracy = 0.91
f1 = 0.88

[extra]
team = "nlp"
""",
    "card.yaml": """
description: A tiny test model
license: mit
metrics: {accuracy: 0.91, f1: 0.88}
primary_uses: [testing]
limitations: [tiny]
parent_model: "base:1.0.0"
training_date: 2024-05-01
extra: {team: nlp}
""",
    "card.json": json.dumps(
        {
            "description": "A tiny test model",
            "license": "mit",
            "metrics": {"accuracy": 0.91, "f1": 0.88},
            "primary_uses": ["testing"],
            "limitations": ["tiny"],
            "parent_model": "base:1.0.0",
            "training_date": "2024-05-01",
            "extra": {"team": "nlp"},
        }
    ),
    "README.md": """---
license: mit
metrics:
  accuracy: 0.91
  f1: 0.88
primary_uses:
  - testing
limitations: [tiny]
parent_model: "base:1.0.0"
training_date: 2024-05-01
extra:
  team: nlp
---

A tiny test model
""",
}


@pytest.mark.parametrize("filename", sorted(CARD_FILES))
def test_card_from_file(reg: pacha.Registry, tmp_path: Path, filename: str) -> None:
    card_file = tmp_path / filename
    card_file.write_text(CARD_FILES[filename])
    v = reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", card=card_file)
    assert v.card == EXPECTED_CARD
    assert reg.get_model("m:1.0.0").card == EXPECTED_CARD


def test_card_from_object_and_mapping_and_metrics(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    v1 = reg.register_model("m", f, "1.0.0", card=EXPECTED_CARD)
    assert v1.card == EXPECTED_CARD
    v2 = reg.register_model(
        "m", f, "2.0.0", card={"license": "apache-2.0", "metrics": {"f1": 0.5}}, metrics={"bleu": 3}
    )
    assert v2.card is not None
    assert v2.card.license == "apache-2.0"
    assert v2.card.metrics == {"f1": 0.5, "bleu": 3.0}
    v3 = reg.register_model("m", f, "3.0.0", metrics={"accuracy": 0.5})
    assert v3.card is not None
    assert v3.card.metrics == {"accuracy": 0.5}
    assert reg.register_model("m", f, "4.0.0").card is None


def test_model_card_loads_with_huggingface_hub(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("bert", blob(tmp_path, "m.bin", b"m"), "1.2.0", card=EXPECTED_CARD)
    text = reg.model_card("bert:1.2.0")
    card = huggingface_hub.ModelCard(text)
    data = card.data.to_dict()
    assert data["license"] == "mit"
    assert data["model_name"] == "bert"
    assert data["model_version"] == "1.2.0"
    assert sorted(data["metrics"]) == ["accuracy", "f1"]
    assert pacha.ModelCard.model_validate(data["pacha"]) == EXPECTED_CARD
    assert "A tiny test model" in card.text
    assert "accuracy" in card.text and "0.91" in card.text
    assert "testing" in card.text


def test_printed_model_card_registers_back_unchanged(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("bert", blob(tmp_path, "m.bin", b"m"), "1.2.0", card=EXPECTED_CARD)
    printed = tmp_path / "README.md"
    printed.write_text(reg.model_card("bert:1.2.0"))
    again = reg.register_model("bert", blob(tmp_path, "n.bin", b"n"), "1.3.0", card=printed)
    assert again.card == EXPECTED_CARD


def test_hugging_face_front_matter_maps_known_keys_and_keeps_the_rest(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    card_file = tmp_path / "README.md"
    card_file.write_text(
        "---\nlicense: apache-2.0\nbase_model: bert-base-uncased\nlanguage: [en]\n"
        "tags: [text-classification]\nmetrics: [accuracy]\n---\n\n# My model\n\nFine-tuned.\n"
    )
    card = reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", card=card_file).card
    assert card is not None
    assert (card.license, card.parent_model) == ("apache-2.0", "bert-base-uncased")
    assert card.extra == {
        "language": ["en"],
        "tags": ["text-classification"],
        "metrics": ["accuracy"],
    }
    assert card.description is not None and "Fine-tuned." in card.description


def test_bump_after_a_pre_release_gives_its_release(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "a.bin", b"a"), "2.0.0-rc.1")
    assert reg.register_model("m", blob(tmp_path, "b.bin", b"b"), bump="patch").version == "2.0.0"


def test_model_card_without_a_card_still_loads(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", description="plain")
    card = huggingface_hub.ModelCard(reg.model_card("m:1.0.0"))
    assert card.data.to_dict()["model_version"] == "1.0.0"
    assert "plain" in card.text


INVALID_CARDS = [
    ("unknown.yaml", "description: x\naccuracyy: 0.9\n", "accuracyy"),
    ("wrongtype.json", '{"metrics": {"accuracy": "high"}}', "metrics.accuracy"),
    ("wronglist.toml", "primary_uses = 5\n", "primary_uses"),
    ("broken.toml", "description = \n", "parse"),
    ("broken.yaml", "metrics: {accuracy: [\n", "parse"),
    ("broken.json", '{"description": ', "parse"),
    ("unclosed.md", "---\nlicense: mit\n\nno closing line\n", "parse"),
    ("card.txt", "description: x\n", ".txt"),
    ("list.yaml", "- a\n- b\n", "mapping"),
]


@pytest.mark.parametrize(("filename", "text", "field"), INVALID_CARDS)
def test_invalid_card_is_refused_and_nothing_stored(
    reg: pacha.Registry, registry: Path, tmp_path: Path, filename: str, text: str, field: str
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    before = snapshot(registry)
    card_file = tmp_path / filename
    card_file.write_text(text)
    new = blob(tmp_path, "new.bin", b"new weights")
    with pytest.raises(pacha.InvalidInputError) as info:
        reg.register_model("m", new, "2.0.0", card=card_file)
    message = str(info.value)
    assert str(card_file) in message
    assert field in message
    assert "\n" not in message
    assert snapshot(registry) == before


def test_card_over_10_mib_is_refused(reg: pacha.Registry, registry: Path, tmp_path: Path) -> None:
    card_file = tmp_path / "huge.json"
    card_file.write_text(json.dumps({"description": "x" * (10 << 20)}))
    before = snapshot(registry)
    with pytest.raises(pacha.InvalidInputError) as info:
        reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", card=card_file)
    assert str(card_file) in str(info.value)
    assert "MiB" in str(info.value)
    assert snapshot(registry) == before


def test_card_that_expands_past_10_mib_is_refused(
    reg: pacha.Registry, registry: Path, tmp_path: Path
) -> None:
    """A YAML alias chain: a 1 KiB file whose document is over 10 MiB."""
    lines = ["extra:", "  l0: &l0 [" + ", ".join(['"' + "x" * 100 + '"'] * 10) + "]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 5)]
    card_file = tmp_path / "bomb.yaml"
    card_file.write_text("\n".join(lines) + "\n")
    assert card_file.stat().st_size < 2048
    before = snapshot(registry)
    with pytest.raises(pacha.InvalidInputError) as info:
        reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", card=card_file)
    assert str(card_file) in str(info.value)
    assert snapshot(registry) == before


def test_datasheet_from_file_and_purpose(reg: pacha.Registry, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.yaml"
    sheet.write_text(
        "purpose: original\ncreators: [ana]\ninstance_count: 3\nlicense: cc-by-4.0\n"
        "features:\n  - {name: text, dtype: string}\n  - {name: label, dtype: int64}\n"
    )
    data = blob(tmp_path, "d.csv", b"text,label\na,1\nb,0\nc,1\n")
    v1 = reg.register_dataset("squad", data, "1.0.0", datasheet=sheet)
    assert v1.datasheet is not None
    assert v1.datasheet.purpose == "original"
    assert [f.name for f in v1.datasheet.features] == ["text", "label"]
    assert v1.datasheet.instance_count == 3
    v2 = reg.register_dataset("squad", data, "1.1.0", datasheet=sheet, purpose="QA fine-tuning")
    assert v2.datasheet is not None
    assert (v2.datasheet.purpose, v2.datasheet.creators) == ("QA fine-tuning", ["ana"])
    v3 = reg.register_dataset("squad", data, "1.2.0", purpose="quick")
    assert v3.datasheet == pacha.Datasheet(purpose="quick")
    assert reg.get_dataset("squad:1.1.0").datasheet == v2.datasheet
    bad = tmp_path / "bad.yaml"
    bad.write_text("instance_count: -1\n")
    with pytest.raises(pacha.InvalidInputError, match="instance_count"):
        reg.register_dataset("squad", data, "2.0.0", datasheet=bad)


# ---- 6. directories ----


def test_directory_round_trip_and_dedup(reg: pacha.Registry, tmp_path: Path) -> None:
    src = make_hf_folder(tmp_path / "bert-base")
    files = [p for p in src.rglob("*") if p.is_file()]
    v = reg.register_model("bert", src, "1.0.0")
    assert v.layout == "tree"
    assert v.file_count == len(files)
    assert v.size == sum(p.stat().st_size for p in files)
    out = tmp_path / "restored" / "deep" / "bert"
    reg.download_model("bert:1.0.0", out)
    assert tree_listing(out) == tree_listing(src)
    assert (out / "empty").is_dir() and not any((out / "empty").iterdir())
    assert os.access(out / "run.sh", os.X_OK)
    assert not os.access(out / "config.json", os.X_OK)
    stats = reg.stats()
    assert stats.logical_bytes == v.size
    assert stats.logical_bytes > stats.stored_bytes
    assert stats.stored_bytes < v.size - 250_000  # the second shard is not stored again
    shard = src / "model-00001-of-00002.safetensors"
    assert pacha.hash_file(shard) in stored_objects(reg)


def test_directory_digest_is_stable(reg: pacha.Registry, tmp_path: Path) -> None:
    src = make_hf_folder(tmp_path / "bert-base")
    a = reg.register_model("bert", src, "1.0.0")
    b = reg.register_model("bert", src, "1.0.1")
    assert a.digest == b.digest
    assert len(a.digest) == 64


def test_symlink_outside_is_refused(reg: pacha.Registry, registry: Path, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    src = make_hf_folder(tmp_path / "model")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (src / "onnx" / "leak.txt").symlink_to(secret)
    before = snapshot(registry)
    with pytest.raises(pacha.InvalidInputError) as info:
        reg.register_model("bert", src, "1.0.0")
    assert "leak.txt" in str(info.value)
    assert "outside" in str(info.value)
    assert snapshot(registry) == before


def test_fifo_inside_is_refused(reg: pacha.Registry, registry: Path, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    src = make_hf_folder(tmp_path / "model")
    os.mkfifo(src / "onnx" / "pipe")
    before = snapshot(registry)
    with pytest.raises(pacha.InvalidInputError) as info:
        reg.register_model("bert", src, "1.0.0")
    assert "pipe" in str(info.value)
    assert "FIFO" in str(info.value)
    assert snapshot(registry) == before


# ---- 7. verification ----


def test_verify_names_every_broken_version(
    reg: pacha.Registry, backend: Backend, tmp_path: Path
) -> None:
    shared = blob(tmp_path, "shared.bin", b"shared weights" * 100)
    reg.register_model("m", shared, "1.0.0")
    reg.register_model("n", shared, "2.0.0")
    reg.register_model("m", blob(tmp_path, "other.bin", b"other weights"), "1.1.0")
    assert reg.verify().ok
    digest = pacha.hash_file(shared)
    backend.forge(digest, offset=10)
    result = reg.verify()
    assert not result.ok
    assert result.checked == 2
    [problem] = result.problems
    assert (problem.digest, problem.kind) == (digest, "corrupt")
    assert reg.verify(["m:1.1.0"]).ok
    assert not reg.verify(["n:2.0.0"]).ok
    assert sorted(problem.breaks) == ["m:1.0.0", "n:2.0.0"]


def test_download_of_corrupt_tree_leaves_nothing(
    reg: pacha.Registry, backend: Backend, tmp_path: Path
) -> None:
    src = make_hf_folder(tmp_path / "bert-base")
    reg.register_model("bert", src, "1.0.0")
    backend.forge(pacha.hash_file(src / "model-00001-of-00002.safetensors"))
    parent = tmp_path / "out"
    parent.mkdir()
    with pytest.raises(pacha.IntegrityError):
        reg.download_model("bert:1.0.0", parent / "bert")
    assert list(parent.iterdir()) == []


def test_download_of_corrupt_file_leaves_nothing(
    reg: pacha.Registry, backend: Backend, tmp_path: Path
) -> None:
    f = write_pattern(tmp_path / "big.bin", 3 << 20, seed=5)
    v = reg.register_model("m", f, "1.0.0")
    backend.forge(v.digest, offset=2 << 20)
    parent = tmp_path / "out"
    parent.mkdir()
    with pytest.raises(pacha.IntegrityError):
        reg.download_model("m:1.0.0", parent / "m.bin")
    assert list(parent.iterdir()) == []


# ---- 8. download ----


def test_download_file_parents_overwrite_and_force(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"version one")
    reg.register_model("m", f, "1.0.0")
    reg.register_model("m", blob(tmp_path, "m2.bin", b"version two"), "2.0.0")
    out = tmp_path / "a" / "b" / "c" / "model.bin"
    reg.download_model("m:1.0.0", out)
    assert out.read_bytes() == b"version one"
    with pytest.raises(pacha.AlreadyExistsError):
        reg.download_model("m:2.0.0", out)
    assert out.read_bytes() == b"version one"
    reg.download_model("m:2.0.0", out, force=True)
    assert out.read_bytes() == b"version two"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin"]


def test_download_tree_overwrite_and_force(reg: pacha.Registry, tmp_path: Path) -> None:
    src = make_hf_folder(tmp_path / "bert-base")
    reg.register_model("bert", src, "1.0.0")
    out = tmp_path / "out" / "bert"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    with pytest.raises(pacha.AlreadyExistsError):
        reg.download_model("bert:1.0.0", out)
    assert tree_listing(out) == {"stale.txt": ("file", b"old", False)}
    reg.download_model("bert:1.0.0", out, force=True)
    assert tree_listing(out) == tree_listing(src)
    assert sorted(p.name for p in out.parent.iterdir()) == ["bert"]


# ---- 9. error paths ----


def test_duplicate_version_is_refused_and_nothing_changes(
    reg: pacha.Registry, registry: Path, tmp_path: Path
) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"first"), "1.0.0")
    before = snapshot(registry)
    other = write_pattern(tmp_path / "other.bin", 2 << 20, seed=9)
    with pytest.raises(pacha.AlreadyExistsError, match=r"1\.0\.0"):
        reg.register_model("m", other, "1.0.0")
    assert snapshot(registry) == before
    assert reg.get_model("m:1.0.0").digest == pacha.hash_bytes(b"first")


def test_unknown_name_version_alias_are_not_found(reg: pacha.Registry, tmp_path: Path) -> None:
    reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0")
    for ref, shown in [
        ("ghost:1.0.0", "ghost"),
        ("m:9.9.9", "9.9.9"),
        ("m@nobody", "nobody"),
        ("ghost:latest", "ghost"),
    ]:
        with pytest.raises(pacha.NotFoundError, match=shown):
            reg.get_model(ref)
    with pytest.raises(pacha.NotFoundError, match="ghost"):
        reg.list_model_versions("ghost")
    with pytest.raises(pacha.NotFoundError, match=r"9\.9\.9"):
        reg.download_model("m:9.9.9", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(pacha.NotFoundError):
        reg.get_dataset("m:1.0.0")  # a model is not a dataset


HOSTILE_NAMES = [
    "a/b",
    "..",
    "../etc",
    "a\\b",
    "-rf",
    ".hidden",
    "a\0b",
    "a\x07b",
    "a\nb",
    "a\x1b[31mred",
    "\x7fx",
    "x" * 256,
    "é" * 128,  # 128 characters, 256 bytes
    "",
    "a b",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused_and_nothing_stored(
    reg: pacha.Registry, registry: Path, tmp_path: Path, name: str
) -> None:
    f = blob(tmp_path, "m.bin", b"hostile")
    before = snapshot(registry)
    with pytest.raises(pacha.InvalidInputError, match="name"):
        reg.register_model(name, f, "1.0.0")
    with pytest.raises(pacha.InvalidInputError):
        reg.register_dataset(name, f, "1.0.0")
    assert snapshot(registry) == before
    assert before[0]["objects"] == 0
    assert object_files(registry) == []


def test_names_at_the_length_limit_are_accepted(reg: pacha.Registry, tmp_path: Path) -> None:
    f = blob(tmp_path, "m.bin", b"m")
    for name in ("x" * 255, "é" * 127):
        assert reg.register_model(name, f, "1.0.0").name == name
        assert reg.get_model(f"{name}:1.0.0").name == name


def test_names_are_nfc_normalised(reg: pacha.Registry, tmp_path: Path) -> None:
    decomposed = "Mode\u0300le"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    f = blob(tmp_path, "m.bin", b"m")
    v = reg.register_model(decomposed, f, "1.0.0")
    assert v.name == composed
    assert reg.get_model(f"{composed}:1.0.0").version == "1.0.0"
    assert reg.get_model(f"{decomposed}:1.0.0").name == composed
    with pytest.raises(pacha.AlreadyExistsError):
        reg.register_model(composed, f, "1.0.0")
    reg.register_model(composed, f, "1.1.0")
    assert [(n.name, n.versions) for n in reg.list_models()] == [(composed, 2)]
    assert pacha.validate_name(decomposed) == composed


# ---- 10. concurrency ----

WORKERS = 6
PER_WORKER = 20
RACED = PER_WORKER // 2  # versions 2.0.0 .. 2.0.9 of "race", tried by every worker


def _concurrent_worker(
    root: str, worker: int, shared: str, own: str, barrier: Any, results: Any
) -> None:
    outcomes = []
    try:
        barrier.wait(timeout=60)
        registry = pacha.Registry(root)
        for j in range(PER_WORKER):
            # Alternate: a version of this worker's own name, then one every worker races on.
            if j % 2:
                name, version = "race", f"2.0.{j // 2}"
            else:
                name, version = f"own-{worker}", f"1.0.{j // 2}"
            source = shared if (j // 2) % 2 else own
            try:
                registry.register_model(name, source, version)
                outcomes.append((name, version, "ok"))
            except pacha.AlreadyExistsError:
                outcomes.append((name, version, "exists"))
            except Exception as exc:
                outcomes.append((name, version, f"{type(exc).__name__}: {exc}"))
    except Exception as exc:
        outcomes.append(("worker", str(worker), f"{type(exc).__name__}: {exc}"))
    results.put((worker, outcomes))


def test_concurrent_writers(registry: Path, tmp_path: Path) -> None:
    shared = write_pattern(tmp_path / "shared.bin", 2 << 20, seed=1)
    owns = [blob(tmp_path, f"own-{w}.bin", f"worker {w}".encode()) for w in range(WORKERS)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    processes = [
        ctx.Process(
            target=_concurrent_worker,
            args=(str(registry), w, str(shared), str(owns[w]), barrier, results),
        )
        for w in range(WORKERS)
    ]
    for p in processes:
        p.start()
    collected = dict(results.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0

    problems = [
        o for outcomes in collected.values() for o in outcomes if o[2] not in ("ok", "exists")
    ]
    assert problems == []
    for w, outcomes in collected.items():
        assert len(outcomes) == PER_WORKER
        own = [o for o in outcomes if o[0] == f"own-{w}"]
        assert all(o[2] == "ok" for o in own), own
    for i in range(RACED):
        winners = [
            w
            for w, outcomes in collected.items()
            for o in outcomes
            if o[:2] == ("race", f"2.0.{i}") and o[2] == "ok"
        ]
        assert len(winners) == 1, (i, winners)

    reg = pacha.Registry(registry)
    stats = reg.stats()
    assert stats.versions == WORKERS * (PER_WORKER - RACED) + RACED
    assert stats.models == WORKERS + 1
    assert len(reg.list_model_versions("race")) == RACED
    assert reg.verify().ok


def test_non_finite_metrics_are_refused_through_the_api_too(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(pacha.InvalidInputError, match="metrics"):
            reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", metrics={"acc": bad})
    assert reg.list_models() == []


def test_force_never_replaces_the_registry_or_the_current_directory(
    reg: pacha.Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("x")
    reg.register_dataset("d", src, "1.0.0")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    inside = [] if reg.path is None else [reg.path, reg.path.parent, reg.path / "objects" / "x"]
    for target in (*inside, work, "."):
        with pytest.raises(pacha.InvalidInputError, match="refusing"):
            reg.download_dataset("d:1.0.0", target, force=True)
    assert reg.verify().ok


def test_force_replaces_a_directory_atomically(reg: pacha.Registry, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    src.mkdir()
    (src / "a.txt").write_text("new")
    reg.register_dataset("d", src, "1.0.0")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    reg.download_dataset("d:1.0.0", dest, force=True)
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pacha-")] == []


def test_fast_record_construction_matches_model_construct(
    reg: pacha.Registry, tmp_path: Path
) -> None:
    from pacha.registry import _construct

    made = reg.register_model("m", blob(tmp_path, "m.bin", b"m"), "1.0.0", tags={"a": "b"})
    fields = {name: getattr(made, name) for name in type(made).model_fields}
    private = {"_document": None, "_skipped": (), "_removed": ()}
    fast = _construct(pacha.ModelVersion, dict(fields), private)
    slow = pacha.ModelVersion.model_construct(**fields)
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    with pytest.raises(ValueError):
        fast.name = "other"  # type: ignore[misc]


def test_errors_carry_a_stable_code_and_each_edge_words_the_remedy(
    reg: pacha.Registry, tmp_path: Path, cli
) -> None:
    """The core's messages name no flag: the Python API says force=True / bump=, the CLI
    says --force / --bump, and scripts read the code."""
    source = tmp_path / "m.bin"
    source.write_bytes(b"weights")
    reg.register_model("m", source, "1.0.0")
    with pytest.raises(pacha.AlreadyExistsError) as again:
        reg.register_model("m", source, "1.0.0")
    assert again.value.code == "version_exists"
    assert again.value.remedy == "new_version"
    assert 'bump="patch"' in str(again.value) and "--bump" not in str(again.value)

    reg.stage_model("m:1.0.0", "staging")
    reg.stage_model("m:1.0.0", "production")
    with pytest.raises(pacha.InvalidInputError) as guarded:
        reg.delete_model("m:1.0.0")
    assert guarded.value.code == "in_production"
    assert "force=True" in str(guarded.value) and "--force" not in str(guarded.value)

    out = tmp_path / "out.bin"
    out.write_bytes(b"")
    with pytest.raises(pacha.AlreadyExistsError) as exists:
        reg.download_model("m:1.0.0", out)
    assert exists.value.code == "already_exists" and exists.value.remedy == "replace"
    assert "force=True" in str(exists.value) and "--force" not in str(exists.value)

    with pytest.raises(pacha.NotFoundError) as missing:
        reg.get_model("nope:1.0.0")
    assert missing.value.code == "not_found" and missing.value.remedy is None

    refused = cli("model", "register", "m", str(source), "-v", "1.0.0")
    assert refused.returncode == 1
    assert "--bump patch" in refused.stderr and "bump=" not in refused.stderr
    refused = cli("model", "delete", "m:1.0.0")
    assert "--force" in refused.stderr and "force=True" not in refused.stderr
    refused = cli("model", "download", "m:1.0.0", "-o", str(out))
    assert "pass --force to replace it" in refused.stderr and "force=True" not in refused.stderr
