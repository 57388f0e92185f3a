"""The ``pacha`` command line: a thin layer over the Python API.

``main()`` is the console entry point. It turns every user-facing failure into one line on
stderr and exit code 1 (usage errors exit 2, Ctrl-C 130) — never a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    from pacha.cli.app import app
    from pacha.cli.output import describe_error, is_user_error

    try:
        app(prog_name="pacha")
    except KeyboardInterrupt:
        print("pacha: interrupted; nothing was left half-written", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        sys.exit(1)
