"""The public surface: names, exception hierarchy, stubs."""

from __future__ import annotations

import subprocess
import sys

import pacha
from pacha import errors


def test_every_public_name_is_importable() -> None:
    for name in pacha.__all__:
        assert getattr(pacha, name) is not None, name
    assert pacha.__version__


def test_exceptions_also_subclass_the_builtins() -> None:
    assert issubclass(errors.NotFoundError, LookupError)
    assert issubclass(errors.IntegrityError, ValueError)
    assert issubclass(errors.AlreadyExistsError, FileExistsError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.SourceChangedError, errors.InvalidInputError)
    for cls in (
        errors.NotFoundError,
        errors.IntegrityError,
        errors.AlreadyExistsError,
        errors.InvalidInputError,
        errors.CancelledError,
    ):
        assert issubclass(cls, errors.PachaError)


def test_errors_module_does_not_load_the_native_core() -> None:
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(any(m.startswith('pacha') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, errors.__file__], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_stubs_match_the_compiled_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "pacha._core"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
