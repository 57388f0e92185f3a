"""Where the registry lives: two settings, resolved from four sources.

``metadata``
    Where names, versions, stages, lineage and runs are kept: a registry directory (a path,
    or ``file:///ABSOLUTE/PATH``), or a PostgreSQL database
    (``postgresql://USER@HOST:PORT/DB``).
``objects``
    Where the bytes are kept: by default the registry directory's own object store
    (``<registry>/objects``), or an S3 bucket (``s3://BUCKET/PREFIX``).

Sources, highest precedence first:

1. the command line (``--registry``, ``--objects``) or the arguments of `pacha.Registry`
   (``path``/``metadata``, ``objects``);
2. the environment: ``PACHA_REGISTRY`` (else ``PACHA_HOME``, its older name) and
   ``PACHA_OBJECTS``;
3. the config file: ``$PACHA_CONFIG``, else ``$XDG_CONFIG_HOME/pacha/config.toml`` (default
   ``~/.config/pacha/config.toml``), a TOML file with a ``[registry]`` table holding
   ``metadata`` and ``objects`` strings (relative paths are relative to the file);
4. the default: ``~/.pacha`` and its own store.

The two settings are a pair: ``objects`` is taken only from the source that gave
``metadata`` or from a higher one. A registry named on the command line therefore brings its
own store, and never inherits the objects of the team registry a config file describes (a
``gc`` there would otherwise sweep the team's objects). For the same reason the config file
is read only when the registry comes from it or from the default (`pacha config show` always
reads it).

Two pairs make a registry: a registry directory with its own objects, or PostgreSQL metadata
with S3 objects (the rule lives in the core: ``_core.location_problem``);
`RegistryLocation.open` refuses any other pair in one line. Secrets (a URL's password, query values
such as ``password=`` or ``secret=``) are shown as ``***`` in everything this module prints
or raises.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Union

from pacha.errors import InvalidInputError

if TYPE_CHECKING:
    from pacha import _core

__all__ = [
    "MAX_CONFIG_BYTES",
    "OBJECTS_DIR",
    "ConfigFile",
    "RegistryLocation",
    "Setting",
    "config_file",
    "mask_secrets",
    "registry_directory",
    "registry_location",
    "resolve",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The object store's directory inside a registry directory (see docs/store-format.md).
OBJECTS_DIR = "objects"

#: A config file larger than this is refused (a real one is a few hundred bytes).
MAX_CONFIG_BYTES = 1 << 20

#: The keys a config file may hold, per table.
CONFIG_KEYS: dict[str, tuple[str, ...]] = {"registry": ("metadata", "objects")}

#: Precedence of each kind of source.
COMMAND_LINE, ENVIRONMENT, CONFIG_FILE, DEFAULT = 3, 2, 1, 0

_METADATA_FORMS = (
    "a registry directory path, file:///ABSOLUTE/PATH or postgresql://USER@HOST:PORT/DB"
)
_OBJECTS_FORMS = "a directory path, file:///ABSOLUTE/PATH or s3://BUCKET/PREFIX"
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)\Z", re.DOTALL)
_SECRET_KEY = re.compile(r"pass|secret|token|signature|credential|sslkey|apikey|api_key", re.I)
_KEYWORD_SECRET = re.compile(r"((?:password|passwd|secret|token)\s*=\s*)(?:'[^']*'|\S+)", re.I)
_SHOWN_CHARS = 200


def mask_secrets(value: str) -> str:
    """``value`` as it may be printed: a URL's password and the values of query parameters
    that look secret (``password``, ``secret``, ``token``, ...) become ``***``. Never fails;
    text that is not a URL is returned unchanged."""
    match = _URL.match(value)
    if match is None:
        # A libpq "key=value" connection string is no URL but may hold a password.
        return _KEYWORD_SECRET.sub(r"\1***", value)
    scheme, rest = match.groups()
    # The user information ends at the last "@" anywhere: a password may hold "/", "?", "#"
    # or "@" unescaped (PostgreSQL's URL parser takes it so). Masking too much (an "@" in a
    # query value) is harmless; too little is not.
    userinfo, at, after = rest.rpartition("@")
    shown_userinfo = ""
    if at:
        user, colon, _password = userinfo.partition(":")
        shown_userinfo = f"{user}:***@" if colon else f"{userinfo}@"
        rest = after
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority_and_path, tail = rest[:cut], rest[cut:]
    if tail.startswith("?"):
        query, hash_sign, fragment = tail[1:].partition("#")
        items = []
        for item in query.split("&"):
            key, equals, _value = item.partition("=")
            items.append(f"{key}=***" if equals and _SECRET_KEY.search(key) else item)
        tail = "?" + "&".join(items) + hash_sign + fragment
    return f"{scheme}://{shown_userinfo}{authority_and_path}{tail}"


def _shown(value: str) -> str:
    """A value for a message: secrets masked, at most `_SHOWN_CHARS` characters."""
    masked = mask_secrets(value)
    return masked if len(masked) <= _SHOWN_CHARS else masked[:_SHOWN_CHARS] + "…"


class Setting(NamedTuple):
    """One resolved setting.

    ``kind`` is ``"directory"`` (``path`` set), ``"postgresql"`` or ``"s3"`` (``value`` holds
    the URL), or ``"none"`` (objects with PostgreSQL metadata and no objects given).
    ``source`` says where it came from ("command line --registry", "environment
    PACHA_REGISTRY", "config file /path (registry.metadata)", "default", ...)."""

    name: str
    kind: str
    value: Optional[str]
    path: Optional[Path]
    source: str
    rank: int

    @property
    def shown(self) -> str:
        """The value as it may be printed (secrets masked; a directory made absolute)."""
        if self.path is not None:
            return str(self.path.absolute())
        return "" if self.value is None else mask_secrets(self.value)

    def to_json(self) -> dict[str, Any]:
        value = None if self.kind == "none" else self.shown
        return {"value": value, "kind": self.kind, "source": self.source}


class ConfigFile(NamedTuple):
    """The config file that was (or would be) read, and what it says."""

    #: Its path; None (and `source` None) when it was not looked at: the registry came from
    #: the command line or the environment.
    path: Optional[Path]
    #: "environment PACHA_CONFIG", "environment XDG_CONFIG_HOME" or "default".
    source: Optional[str]
    #: Whether it exists; None when it was not looked at.
    exists: Optional[bool]
    #: Its ``[registry]`` values (empty when missing or not read).
    values: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        path = None if self.path is None else str(self.path)
        return {"path": path, "source": self.source, "exists": self.exists}


class RegistryLocation(NamedTuple):
    """Where the registry lives: both settings and the config file behind them."""

    metadata: Setting
    objects: Setting
    config: ConfigFile

    def _core_locations(self) -> tuple[str, Optional[str]]:
        """The two locations as the core takes them: the metadata as an absolute path or a
        URL; the objects as None for the registry directory's own store, else as given."""
        metadata, objects = self.metadata, self.objects
        meta = str(metadata.path.absolute()) if metadata.path is not None else metadata.value
        assert meta is not None
        if objects.kind == "none":
            return meta, None
        if objects.path is not None:
            own = None if metadata.path is None else metadata.path / OBJECTS_DIR
            if own is not None and os.path.realpath(objects.path) == os.path.realpath(own):
                return meta, None
            return meta, str(objects.path.absolute())
        return meta, objects.value

    def problem(self) -> Optional[str]:
        """Why no registry can live here (the pairs the core supports: a registry directory
        with its own objects, or PostgreSQL with S3), or None when one can."""
        from pacha import _core

        why = _core.location_problem(*self._core_locations())
        if why is None:
            return None
        sources = f"metadata {_shown(self.metadata.shown)} from {self.metadata.source}"
        if self.objects.kind != "none":
            sources += f", objects {_shown(self.objects.shown)} from {self.objects.source}"
        elif "ignored" in self.objects.source:
            sources += f"; objects: {self.objects.source}"
        return mask_secrets(f"{why} ({sources})")

    @property
    def shared(self) -> bool:
        """True for a registry without a registry directory (PostgreSQL metadata)."""
        return self.metadata.path is None

    def open(self, *, read_only: bool = False, create: bool = True) -> _core.Registry:
        """Open the registry (see `pacha.Registry`); `InvalidInputError` (one line, secrets
        masked) for a pair of locations no registry can have."""
        from pacha import _core

        problem = self.problem()
        if problem is not None:
            raise InvalidInputError(problem)
        metadata, objects = self._core_locations()
        if self.metadata.path is not None:
            return _core.Registry(self.metadata.path, read_only=read_only, create=create)
        return _core.Registry.connect(metadata, objects, read_only=read_only, create=create)

    def local_registry(self, what: str = "this") -> Path:
        """The registry directory, for what only a registry directory has (`what` names
        it: "`pacha recover`"); `InvalidInputError` (one line, secrets masked) otherwise."""
        problem = self.problem()
        if problem is not None:
            raise InvalidInputError(problem)
        if self.metadata.path is None:
            raise InvalidInputError(
                f"{what} works on a registry directory, and the registry in force is the shared "
                f"one at {_shown(self.metadata.shown)} (from {self.metadata.source}); give "
                "--registry PATH"
            )
        return self.metadata.path

    def to_json(self) -> dict[str, Any]:
        problem = self.problem()
        return {
            "metadata": self.metadata.to_json(),
            "objects": self.objects.to_json(),
            "config_file": self.config.to_json(),
            "supported": problem is None,
            "problem": problem,
        }


# ---- values ----


def _parse(name: str, value: PathLike, source: str, rank: int, base: Optional[Path]) -> Setting:
    """A setting from a value: a path (relative ones against `base` when given), a
    ``file://`` URL, or a ``postgresql://`` / ``s3://`` URL where the setting takes one."""
    forms = _METADATA_FORMS if name == "metadata" else _OBJECTS_FORMS
    if not isinstance(value, str):  # a path object is a path, whatever it looks like
        text = os.fspath(value)
        if not isinstance(text, str):
            raise InvalidInputError(f"registry {name} must be text or a path, not bytes")
        return _directory(name, text, source, rank, base)
    if "\0" in value:
        raise InvalidInputError(f"registry {name} from {source} contains a NUL character")
    match = _URL.match(value)
    if match is None:
        return _directory(name, value, source, rank, base)
    scheme, rest = match.group(1).lower(), match.group(2)
    what = f"registry {name} {_shown(value)!r} from {source}"
    if scheme == "file":
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost") or not slash:
            raise InvalidInputError(
                f"{what}: a file:// URL names an absolute local path, as in file:///srv/pacha"
            )
        from urllib.parse import unquote

        return _directory(name, unquote("/" + path), source, rank, None)
    if scheme in ("postgresql", "postgres"):
        if name != "metadata":
            raise InvalidInputError(
                f"{what}: a PostgreSQL database holds metadata, not objects; give {forms}"
            )
        return Setting(name, "postgresql", value, None, source, rank)
    if scheme == "s3":
        if name != "objects":
            raise InvalidInputError(
                f"{what}: an S3 bucket holds objects, not metadata; give {forms}"
            )
        bucket = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        if "@" in bucket or ":" in bucket:
            raise InvalidInputError(
                f"{what}: an s3:// URL is s3://BUCKET/PREFIX, with no user, password or port"
            )
        if not bucket:
            raise InvalidInputError(f"{what}: name a bucket, as in s3://BUCKET/PREFIX")
        return Setting(name, "s3", value, None, source, rank)
    raise InvalidInputError(f"{what}: unknown scheme {scheme[:40]!r}; give {forms}")


def _directory(name: str, text: str, source: str, rank: int, base: Optional[Path]) -> Setting:
    if "\0" in text:
        raise InvalidInputError(f"registry {name} from {source} contains a NUL character")
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return Setting(name, "directory", text, path, source, rank)


def _given(value: Optional[PathLike]) -> bool:
    return value is not None and (not isinstance(value, str) or value != "")


# ---- the config file ----


def config_file_path() -> tuple[Path, str]:
    """The config file to read and where that choice came from."""
    named = os.environ.get("PACHA_CONFIG")
    if named:
        return Path(named).expanduser(), "environment PACHA_CONFIG"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    # The XDG Base Directory specification: a relative path there is invalid and ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "pacha" / "config.toml", "environment XDG_CONFIG_HOME"
    return _home("the config file") / ".config" / "pacha" / "config.toml", "default"


def _home(needed_for: str) -> Path:
    try:
        return Path.home()
    except RuntimeError:  # no HOME and no user database entry (some containers)
        raise InvalidInputError(
            f"no home directory to find {needed_for} in: set HOME, or PACHA_REGISTRY "
            "(or --registry)"
        ) from None


def config_file() -> ConfigFile:
    """Read the config file: a missing one at the default place is empty; a missing one
    named by ``PACHA_CONFIG``, and anything that is not a small TOML file of known string
    keys, is an error naming the file and the problem."""
    from pacha._files import read_regular_file

    path, source = config_file_path()
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES, "config file")
    except FileNotFoundError:
        if source == "environment PACHA_CONFIG":
            raise FileNotFoundError(
                errno.ENOENT, "no such config file (PACHA_CONFIG names it)", str(path)
            ) from None
        return ConfigFile(path, source, False, {})
    except NotADirectoryError:
        if source == "environment PACHA_CONFIG":
            raise NotADirectoryError(
                errno.ENOTDIR, "config file (PACHA_CONFIG names it) is under a file", str(path)
            ) from None
        return ConfigFile(path, source, False, {})
    except IsADirectoryError:
        raise IsADirectoryError(errno.EISDIR, "the config file is a directory", str(path)) from None
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, f"the config file cannot be read: {exc.strerror}", str(path)
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidInputError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; "
            "a config file holds a few lines"
        )
    return ConfigFile(path, source, True, _config_values(path, data))


def _config_values(path: Path, data: bytes) -> dict[str, str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    from pacha._limits import parse_capped

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"config file {path} is not UTF-8 text") from None
    try:
        document: dict[str, Any] = parse_capped(
            tomllib.loads, text, f"config file {path}", MAX_CONFIG_BYTES
        )
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"config file {path} is not valid TOML: {exc}") from None
    for table in document:
        if table not in CONFIG_KEYS:
            raise InvalidInputError(
                f"config file {path}: unknown table {_key(table)}"
                f"{_did_you_mean(table, CONFIG_KEYS)} (known: "
                + ", ".join(f"[{t}]" for t in CONFIG_KEYS)
                + ")"
            )
    registry = document.get("registry", {})
    if not isinstance(registry, dict):
        raise InvalidInputError(
            f"config file {path}: registry must be a table ([registry]), not {_toml_type(registry)}"
        )
    known = CONFIG_KEYS["registry"]
    values: dict[str, str] = {}
    for key, value in registry.items():
        if key not in known:
            raise InvalidInputError(
                f"config file {path}: unknown key registry.{_key(key)}"
                f"{_did_you_mean(key, known, 'registry.')} (known: "
                + ", ".join(f"registry.{k}" for k in known)
                + ")"
            )
        if not isinstance(value, str):
            raise InvalidInputError(
                f"config file {path}: registry.{key} must be a string, not {_toml_type(value)}"
            )
        if not value:
            raise InvalidInputError(
                f"config file {path}: registry.{key} is empty; remove it or give a location"
            )
        values[key] = value
    return values


def _key(key: str) -> str:
    return repr(key if len(key) <= 60 else key[:60] + "…")


def _did_you_mean(key: str, known: Any, prefix: str = "") -> str:
    import difflib

    guess = difflib.get_close_matches(key[:60], list(known), n=1)
    return f"; did you mean {prefix}{guess[0]}?" if guess else ""


def _toml_type(value: Any) -> str:
    from datetime import date, datetime, time

    names: tuple[tuple[type, str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (dict, "a table"),
        (list, "an array"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    )
    for cls, name in names:
        if isinstance(value, cls):
            return name
    return type(value).__name__


# ---- resolution ----


def resolve(
    metadata: Optional[PathLike] = None,
    objects: Optional[PathLike] = None,
    *,
    metadata_source: str = "argument metadata",
    objects_source: str = "argument objects",
    read_config: bool = False,
) -> RegistryLocation:
    """Where the registry lives, given what the command line or the caller said
    (``metadata``, ``objects``; None or "" for nothing), then the environment, the config
    file and the defaults. Values are validated (an unknown URL scheme, an S3 URL without a
    bucket, a PostgreSQL URL for objects, ... are `InvalidInputError`) but not opened: see
    `RegistryLocation.local_registry`. The config file is read when the registry comes from
    it or from the default, or when ``read_config``."""
    meta: Optional[Setting] = None
    if _given(metadata):
        assert metadata is not None
        meta = _parse("metadata", metadata, metadata_source, COMMAND_LINE, None)
    else:
        env = os.environ.get("PACHA_REGISTRY")
        home = os.environ.get("PACHA_HOME")
        if env:
            over = ", overriding PACHA_HOME" if home else ""
            meta = _parse("metadata", env, f"environment PACHA_REGISTRY{over}", ENVIRONMENT, None)
        elif home:
            meta = _parse("metadata", home, "environment PACHA_HOME", ENVIRONMENT, None)

    config = ConfigFile(None, None, None, {})
    if meta is None or read_config:
        config = config_file()
    # Relative paths in the config file are relative to it.
    base = None if config.path is None else config.path.parent
    if meta is None and "metadata" in config.values:
        meta = _parse(
            "metadata",
            config.values["metadata"],
            f"config file {config.path} (registry.metadata)",
            CONFIG_FILE,
            base,
        )
    if meta is None:
        default = _home("the default registry ~/.pacha") / ".pacha"
        meta = Setting("metadata", "directory", None, default, "default", DEFAULT)

    # Objects: the first source that sets them, used only if it ranks with the metadata's or
    # higher (and only then parsed: a value that is not used cannot fail).
    candidates: list[tuple[PathLike, str, int, Optional[Path]]] = []
    if _given(objects):
        assert objects is not None
        candidates.append((objects, objects_source, COMMAND_LINE, None))
    env_objects = os.environ.get("PACHA_OBJECTS")
    if env_objects:
        candidates.append((env_objects, "environment PACHA_OBJECTS", ENVIRONMENT, None))
    if "objects" in config.values:
        where = f"config file {config.path} (registry.objects)"
        candidates.append((config.values["objects"], where, CONFIG_FILE, base))
    note = ""
    if candidates:
        value, source, rank, relative_to = candidates[0]
        if rank >= meta.rank:
            chosen = _parse("objects", value, source, rank, relative_to)
            return RegistryLocation(meta, chosen, config)
        ignored = "registry.objects in the config file" if rank == CONFIG_FILE else source
        note = (
            f"; {ignored} is ignored: the registry comes from {meta.source}, which brings its "
            "own objects"
        )
    source = f"default (the registry directory's own store{note})"
    if meta.path is None:
        source = f"default (none: PostgreSQL metadata has no registry directory{note})"
        none = Setting("objects", "none", None, None, source, DEFAULT)
        return RegistryLocation(meta, none, config)
    own = meta.path / OBJECTS_DIR
    return RegistryLocation(
        meta, Setting("objects", "directory", None, own, source, DEFAULT), config
    )


def registry_directory(
    path: Optional[PathLike] = None,
    *,
    metadata: Optional[PathLike] = None,
    objects: Optional[PathLike] = None,
    what: str = "this",
) -> Path:
    """The registry directory for these arguments, for what only a registry directory has
    (`what` names it in the refusal of a shared registry); see `registry_location`."""
    return registry_location(path, metadata=metadata, objects=objects).local_registry(what)


def registry_location(
    path: Optional[PathLike] = None,
    *,
    metadata: Optional[PathLike] = None,
    objects: Optional[PathLike] = None,
) -> RegistryLocation:
    """Where the registry `pacha.Registry` opens for these arguments lives (``metadata`` is
    another name for ``path``), resolved as `resolve` does."""
    if _given(path) and _given(metadata):
        raise InvalidInputError(
            "give path or metadata, not both (metadata is another name for path)"
        )
    source = "argument metadata" if _given(metadata) else "argument path"
    location = resolve(
        metadata if _given(metadata) else path,
        objects,
        metadata_source=source,
        objects_source="argument objects",
    )
    return location
