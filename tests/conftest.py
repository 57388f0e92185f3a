from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "registry"


@pytest.fixture
def cli(registry: Path, tmp_path: Path):
    """Run the real `pacha` command line in a subprocess against a private registry."""

    def run(*args: str, input: bytes | None = None, cwd: Path | None = None) -> CliResult:
        env = {**os.environ, "PACHA_HOME": str(registry), "COLUMNS": "200"}
        proc = subprocess.run(
            [sys.executable, "-m", "pacha", *args],
            input=input,
            capture_output=True,
            env=env,
            cwd=cwd or tmp_path,
            timeout=120,
        )
        return CliResult(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    return run
