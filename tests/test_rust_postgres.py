"""The Rust metadata conformance suite on PostgreSQL: `cargo test` of the core, pointed at the
server this test suite starts (`PACHA_TEST_POSTGRES_URL`). Without a server the Rust tests
pass without running; here they must run, and the test checks that they did."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_metadata_conformance_suite_passes_on_postgresql(postgres: Any) -> None:
    cargo = shutil.which("cargo")
    if cargo is None or not (ROOT / "Cargo.toml").is_file():
        pytest.skip("needs cargo and the source tree (run from a clone)")
    env = {**os.environ, "PACHA_TEST_POSTGRES_URL": postgres.url("postgres")}
    run = subprocess.run(
        [cargo, "test", "--release", "--locked", "-p", "pacha-core", "--", "meta::postgres"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "PostgreSQL store tests skipped" not in output
    ran = sum(int(n) for n in re.findall(r"test result: ok\. (\d+) passed", output))
    assert ran >= 20, output[-2000:]
