"""Model-based testing: random sequences of register / stage / alias / tag / delete / gc /
verify through the Python API, checked after every step against a plain in-memory model of
what the registry should hold."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import pacha

NAMES = ("alpha", "beta")
VERSIONS = ("1.0.0", "1.0.1", "1.1.0", "2.0.0", "2.0.0-rc.1")
CONTENTS = (b"weights-a" * 100, b"weights-b" * 100, b"weights-c" * 3000)
ALIASES = ("champion", "candidate")
STAGES = ("development", "staging", "production", "archived")
ALLOWED = {
    "development": {"staging", "archived"},
    "staging": {"development", "production", "archived"},
    "production": {"staging", "archived"},
    "archived": {"development"},
}


@dataclass
class Expected:
    content: int
    stage: str = "development"
    tags: dict[str, str] = field(default_factory=dict)


def _precedence(version: str) -> tuple[int, int, int, int, str]:
    core, _, pre = version.partition("-")
    major, minor, patch = (int(x) for x in core.split("."))
    # A pre-release sorts before its release.
    return (major, minor, patch, 0 if pre else 1, pre)


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="pacha-state-"))
        self.reg = pacha.Registry(self.dir / "registry")
        self.sources = []
        for i, content in enumerate(CONTENTS):
            path = self.dir / f"content-{i}.bin"
            path.write_bytes(content)
            self.sources.append(path)
        self.versions: dict[tuple[str, str], Expected] = {}
        self.deleted: set[tuple[str, str]] = set()
        self.aliases: dict[tuple[str, str], str] = {}  # (name, alias) -> version

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _live(self) -> list[tuple[str, str]]:
        return sorted(self.versions)

    # ---- rules ----

    @rule(name=st.sampled_from(NAMES), version=st.sampled_from(VERSIONS), content=st.integers(0, 2))
    def register(self, name: str, version: str, content: int) -> None:
        key = (name, version)
        try:
            got = self.reg.register_model(name, self.sources[content], version)
        except pacha.AlreadyExistsError:
            assert key in self.versions or key in self.deleted
            return
        assert key not in self.versions and key not in self.deleted
        assert got.version == version and got.stage.value == "development"
        self.versions[key] = Expected(content)

    @rule(name=st.sampled_from(NAMES), content=st.integers(0, 2))
    def register_bump(self, name: str, content: int) -> None:
        got = self.reg.register_model(name, self.sources[content], bump="patch")
        key = (name, got.version)
        assert key not in self.versions and key not in self.deleted
        known = [v for (n, v) in [*self.versions, *self.deleted] if n == name]
        if known:
            highest = max(known, key=_precedence)
            assert _precedence(got.version) > _precedence(highest)
        self.versions[key] = Expected(content)

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), to=st.sampled_from(STAGES))
    def stage(self, data: st.DataObject, to: str) -> None:
        name, version = data.draw(st.sampled_from(self._live()))
        expected = self.versions[(name, version)]
        try:
            got = self.reg.stage_model(f"{name}:{version}", to)
        except pacha.InvalidTransitionError:
            assert to != expected.stage and to not in ALLOWED[expected.stage]
            return
        assert to == expected.stage or to in ALLOWED[expected.stage]
        assert got.stage.value == to
        expected.stage = to

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), alias=st.sampled_from(ALIASES))
    def alias(self, data: st.DataObject, alias: str) -> None:
        name, version = data.draw(st.sampled_from(self._live()))
        self.reg.alias_model(f"{name}:{version}", alias)
        self.aliases[(name, alias)] = version

    @precondition(lambda self: self.versions)
    @rule(
        data=st.data(),
        key=st.sampled_from(("team", "reviewed")),
        value=st.text("xyz", min_size=1, max_size=3),
    )
    def tag(self, data: st.DataObject, key: str, value: str) -> None:
        name, version = data.draw(st.sampled_from(self._live()))
        self.reg.tag_model(f"{name}:{version}", {key: value})
        self.versions[(name, version)].tags[key] = value

    @precondition(lambda self: self.versions)
    @rule(data=st.data(), force=st.booleans())
    def delete(self, data: st.DataObject, force: bool) -> None:
        name, version = data.draw(st.sampled_from(self._live()))
        expected = self.versions[(name, version)]
        try:
            self.reg.delete_model(f"{name}:{version}", force=force)
        except pacha.InvalidInputError:
            assert expected.stage == "production" and not force
            return
        assert expected.stage != "production" or force
        del self.versions[(name, version)]
        self.deleted.add((name, version))
        for alias_key, target in list(self.aliases.items()):
            if alias_key[0] == name and target == version:
                del self.aliases[alias_key]

    @rule()
    def gc(self) -> None:
        self.reg.gc(grace=0)
        used = {self.versions[k].content for k in self.versions}
        stored = {o.digest for o in self.reg.store.list()}
        assert stored == {pacha.hash_file(self.sources[c]) for c in used}

    @rule()
    def verify(self) -> None:
        assert self.reg.verify().ok

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def download(self, data: st.DataObject) -> None:
        name, version = data.draw(st.sampled_from(self._live()))
        out = self.dir / "out.bin"
        self.reg.download_model(f"{name}:{version}", out, force=True)
        assert out.read_bytes() == CONTENTS[self.versions[(name, version)].content]

    # ---- invariants ----

    @invariant()
    def listing_matches_the_model(self) -> None:
        listed = {(v.name, v.version): v for v in self.reg.list_model_versions()}
        assert set(listed) == set(self.versions)
        for key, expected in self.versions.items():
            got = listed[key]
            assert got.stage.value == expected.stage, key
            assert got.tags == expected.tags, key
            assert got.digest == pacha.hash_file(self.sources[expected.content]), key
            aliases = {a for (n, a), v in self.aliases.items() if n == key[0] and v == key[1]}
            assert set(got.aliases) == aliases, key
        names = {n.name: n for n in self.reg.list_models()}
        assert set(names) == {n for n, _ in self.versions}

    @invariant()
    def references_resolve(self) -> None:
        for (name, alias), version in self.aliases.items():
            assert self.reg.get_model(f"{name}@{alias}").version == version
        for name in NAMES:
            releases = [v for (n, v) in self.versions if n == name and "-" not in v]
            latest: Optional[str] = max(releases, key=_precedence) if releases else None
            if latest is None:
                continue
            assert self.reg.get_model(f"{name}:latest").version == latest
        for name, version in self.deleted:
            try:
                self.reg.get_model(f"{name}:{version}")
            except pacha.NotFoundError:
                continue
            raise AssertionError(f"deleted {name}:{version} still resolves")


TestRegistryMachine = RegistryMachine.TestCase
