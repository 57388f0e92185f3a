"""The ``pacha`` command line: a thin layer over the Python API.

``main()`` is the console entry point. It turns every user-facing failure into one line on
stderr and exit code 1 (usage errors exit 2, Ctrl-C 130) — never a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the work in progress is cancelled and cleaned up."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The exception of `kind` that `exc` was raised from (or while handling), if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _interrupted(exc: BaseException) -> None:
    terminated = isinstance(exc, Terminated)
    what = "terminated" if terminated else "interrupted"
    print(f"pacha: {what}; nothing was left half-written", file=sys.stderr)
    sys.exit(143 if terminated else 130)


def main() -> None:
    import signal

    from pacha.cli.app import app
    from pacha.cli.output import describe_error, is_user_error

    # A `kill` (or a job scheduler ending the job) cleans up like Ctrl-C: no temp files in
    # the store, no partial downloads.
    signal.signal(signal.SIGTERM, _terminate)
    undecodable = _undecodable_text_argument()
    if undecodable is not None:
        print(
            f"error: argument {undecodable} is not valid UTF-8 text (it holds bytes passed "
            "through undecoded); names, versions, tags, references and descriptions must be "
            "UTF-8 (file paths may be anything that exists)",
            file=sys.stderr,
        )
        sys.exit(1)
    try:
        app(prog_name="pacha")
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except SystemExit as exc:
        # Typer turns Ctrl-C into a silent exit 130; say what happened instead.
        interrupt = _cause(exc, KeyboardInterrupt)
        if interrupt is None:
            raise
        _interrupted(interrupt)
    except Exception as exc:
        if is_user_error(exc):
            print(f"error: {describe_error(exc)}", file=sys.stderr)
            sys.exit(1)
        if "surrogates not allowed" in str(exc):
            # Undecodable bytes in an argument that looked like a path but is used as text.
            print(
                "error: an argument is not valid UTF-8 text; names, versions, tags, "
                "references and descriptions must be UTF-8",
                file=sys.stderr,
            )
            sys.exit(1)
        _bug(exc)
    except BaseException as exc:  # a PanicException from the native core, say
        _bug(exc)


def _undecodable_text_argument() -> int | None:
    """The position of the first argument holding bytes that are not UTF-8 (Python hands
    them over as lone surrogates, PEP 383) and that is not a path: a file name may be any
    bytes, text recorded in the registry may not."""
    import os
    from pathlib import Path

    for position, arg in enumerate(sys.argv[1:], start=1):
        if not any("\udc80" <= c <= "\udcff" for c in arg):
            continue
        if os.path.lexists(arg) or ("/" in arg and Path(arg).parent.is_dir()):
            continue
        return position
    return None


def _bug(exc: BaseException) -> None:
    """An error no rule anticipated: one line saying so, never a traceback (unless
    PACHA_DEBUG is set); nothing was left half-written, as for any other failure."""
    import os

    if os.environ.get("PACHA_DEBUG"):
        raise exc
    from pacha.cli.output import describe_error

    print(
        f"error: internal error: {type(exc).__name__}: {describe_error(exc)}; this is a bug in "
        "pacha — please report it (PACHA_DEBUG=1 shows the traceback)",
        file=sys.stderr,
    )
    sys.exit(70)
