"""``pacha hash``: BLAKE3 digests in b3sum's format, so ``b3sum --check`` accepts them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def b3sum_line(digest: str, name: str) -> str:
    """Format one line as b3sum does, escaping names that hold a backslash or a newline."""
    if "\\" in name or "\n" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{digest}  {escaped}"
    return f"{digest}  {name}"


def _hash_stdin() -> str:
    from pacha._core import Hasher

    hasher = Hasher()
    stream = sys.stdin.buffer
    while chunk := stream.read(1 << 20):
        hasher.update(chunk)
    return hasher.hexdigest()


def hash_command(
    files: Annotated[
        list[str], typer.Argument(metavar="FILE...", help="Files to hash; '-' reads stdin.")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Print the BLAKE3 digest of each FILE, as b3sum does.

    Every file is attempted; failures are reported one line each on stderr and make the exit
    code 1. Example: pacha hash *.safetensors > SUMS && b3sum --check SUMS
    """
    from pacha._core import hash_file
    from pacha.cli.output import describe_error, is_user_error, print_json
    from pacha.cli.progress import transfer_progress

    results = []
    failed = False
    for name in files:
        try:
            if name == "-":
                digest = _hash_stdin()
            else:
                with transfer_progress(f"hashing {name}", quiet=quiet) as progress:
                    digest = hash_file(name, progress)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            print(f"error: {describe_error(exc)}", file=sys.stderr)
            failed = True
            continue
        if json_out:
            results.append({"path": name, "digest": digest})
        else:
            typer.echo(b3sum_line(digest, name))
    if json_out:
        print_json(results)
    if failed:
        raise typer.Exit(1)
