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
        if not is_user_error(exc):
            raise
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        sys.exit(1)
