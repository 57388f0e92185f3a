"""The `pacha` command line, run as a real subprocess: output formats, exit codes, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest

from support import write_pattern


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_hash_prints_b3sum_lines(cli, tmp_path: Path) -> None:
    a = write_pattern(tmp_path / "a.bin", 3 << 20, seed=1)
    b = write_pattern(tmp_path / "b b.bin", 100, seed=2)
    result = cli("hash", str(a), str(b))
    assert result.returncode == 0, result.stderr
    expected = [f"{blake3.blake3(p.read_bytes()).hexdigest()}  {p}" for p in (a, b)]
    assert result.stdout.splitlines() == expected


def test_hash_escapes_names_like_b3sum(cli, tmp_path: Path) -> None:
    odd = tmp_path / "back\\slash\nnewline"
    odd.write_bytes(b"x")
    result = cli("hash", str(odd))
    digest = blake3.blake3(b"x").hexdigest()
    escaped = str(odd).replace("\\", "\\\\").replace("\n", "\\n")
    assert result.stdout == f"\\{digest}  {escaped}\n"


@pytest.mark.skipif(shutil.which("b3sum") is None, reason="b3sum is not installed")
def test_b3sum_check_accepts_our_output(cli, tmp_path: Path) -> None:
    files = [
        write_pattern(tmp_path / f"f{i}", size, seed=i) for i, size in enumerate([0, 1, 5 << 20])
    ]
    odd = tmp_path / "name with\\backslash"
    odd.write_bytes(b"odd")
    result = cli("hash", *(p.name for p in [*files, odd]), cwd=tmp_path)
    sums = tmp_path / "SUMS"
    sums.write_text(result.stdout)
    check = subprocess.run(
        ["b3sum", "--check", str(sums)], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_hash_stdin(cli) -> None:
    result = cli("hash", "-", input=b"from a pipe")
    assert result.stdout == f"{blake3.blake3(b'from a pipe').hexdigest()}  -\n"


def test_hash_errors_are_one_line_and_exit_1(cli, tmp_path: Path) -> None:
    good = write_pattern(tmp_path / "good", 10)
    result = cli("hash", str(tmp_path / "missing"), str(good))
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "missing" in line and "No such file" in line
    assert result.stdout.strip().endswith(str(good)), "the other files are still hashed"
    result = cli("hash", str(tmp_path))
    assert result.returncode == 1
    assert "Is a directory" in one_error_line(result.stderr)


def test_hash_json(cli, tmp_path: Path) -> None:
    f = write_pattern(tmp_path / "f", 1000)
    doc = json.loads(cli("hash", "--json", str(f)).stdout)
    assert doc == [{"path": str(f), "digest": blake3.blake3(f.read_bytes()).hexdigest()}]


def test_store_add_list_get_verify(cli, registry: Path, tmp_path: Path) -> None:
    src = write_pattern(tmp_path / "model.bin", 2 << 20, seed=7)
    digest = blake3.blake3(src.read_bytes()).hexdigest()

    added = json.loads(cli("store", "add", "--json", str(src)).stdout)
    assert added == [{"path": str(src), "digest": digest, "size": 2 << 20, "written": True}]
    again = json.loads(cli("store", "add", "--json", str(src)).stdout)
    assert again[0]["written"] is False
    assert (registry / "objects" / digest[:2] / digest).exists()

    listed = json.loads(cli("store", "list", "--json").stdout)
    assert listed == [{"digest": digest, "size": 2 << 20}]
    human = cli("store", "list")
    assert digest in human.stdout

    out = tmp_path / "restored" / "model.bin"
    got = cli("store", "get", digest, "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == src.read_bytes()

    refused = cli("store", "get", digest, "-o", str(out))
    assert refused.returncode == 1
    assert "--force" in one_error_line(refused.stderr)
    assert cli("store", "get", digest, "-o", str(out), "--force").returncode == 0

    verified = cli("store", "verify", "--json")
    assert verified.returncode == 0
    assert json.loads(verified.stdout) == {
        "ok": True,
        "checked": 1,
        "bytes": 2 << 20,
        "problems": [],
    }
    assert "all intact" in cli("store", "verify").stdout


def test_corruption_fails_verify_and_get_leaves_nothing(
    cli, registry: Path, tmp_path: Path
) -> None:
    src = write_pattern(tmp_path / "data.bin", 100_000, seed=8)
    digest = json.loads(cli("store", "add", "--json", str(src)).stdout)[0]["digest"]
    obj = registry / "objects" / digest[:2] / digest
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[500] ^= 0xFF
    obj.write_bytes(bytes(data))

    result = cli("store", "verify", "--json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [(p["digest"], p["kind"]) for p in doc["problems"]] == [(digest, "corrupt")]
    human = cli("store", "verify")
    assert human.returncode == 1 and "corrupt" in human.stdout

    out = tmp_path / "out.bin"
    got = cli("store", "get", digest, "-o", str(out))
    assert got.returncode == 1
    assert "integrity check failed" in one_error_line(got.stderr)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("store", "get", "abc", "-o", "x"), "64 lowercase"),
        (("store", "get", "a" * 64, "-o", "x"), "not in the store"),
        (("store", "add", "/nonexistent/file"), "No such file"),
        (("store", "verify", "Z" * 64), "64 lowercase"),
    ],
)
def test_store_errors_are_one_line(cli, args: tuple[str, ...], message: str) -> None:
    if args[1] != "add":
        # Commands that read never create a registry: without one, that is the error.
        missing = cli(*args)
        assert missing.returncode == 1
        assert "there is no registry at" in one_error_line(missing.stderr)
        assert cli("init").returncode == 0
    result = cli(*args)
    assert result.returncode == 1
    assert message in one_error_line(result.stderr)


def test_usage_errors_exit_2(cli) -> None:
    assert cli("store", "bogus").returncode == 2
    assert cli("hash").returncode == 2
    assert cli("store", "get", "a" * 64).returncode == 2  # -o is required


def test_init_and_registry_option(cli, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    result = cli("--registry", str(elsewhere), "init", "--json")
    assert json.loads(result.stdout) == {"registry": str(elsewhere.resolve()), "read_only": None}
    assert (elsewhere / "registry.db").is_file()
    assert (elsewhere / "objects").is_dir()
    assert cli("--version").stdout.startswith("pacha ")
    assert "store" in cli("--help").stdout


def test_listings_are_aligned_literal_and_coloured_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    from pacha.cli.output import print_columns

    rows = [("bert", "1.10.0", "production", "3 B"), ("画像\x1b[31m", "2", "staging", "12 KiB")]
    styles = {(0, 2): "bold green", (1, 2): "yellow"}
    print_columns(("name", "version", "stage", "size"), rows, right={"size"}, styles=styles)
    lines = capsys.readouterr().out.splitlines()
    # The escaped name is 12 columns wide: two wide characters and 8 literal ones.
    assert lines == [
        "name          version  stage         size",
        "bert          1.10.0   production     3 B",
        "画像\\x1b[31m  2        staging     12 KiB",
    ]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for no_color, coloured in ((None, True), ("1", False)):
        if no_color is None:
            monkeypatch.delenv("NO_COLOR", raising=False)
        else:
            monkeypatch.setenv("NO_COLOR", no_color)
        terminal = Terminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        print_columns(("name", "stage"), [("bert", "production")], styles={(0, 1): "bold green"})
        assert ("\x1b[1;32mproduction\x1b[0m" in terminal.getvalue()) is coloured
