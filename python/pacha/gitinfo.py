"""The git commit (and whether the work tree is dirty) of the directory a run starts in,
read without letting the repository run anything.

A repository's own configuration (``.git/config``) can name programs git runs on its own:
``core.fsmonitor`` is run by ``git status``, a ``filter.<driver>.clean`` is run on changed
files, and includes pull in more. A downloaded artifact that carries a ``.git/`` (or any
repository a run happens to start in) would thereby run code the moment pacha asks git a
question. So every git call here:

- is read-only (``rev-parse``, ``config --list``, ``status``) and never opens a pager, asks
  for credentials or takes an optional lock;
- turns off what can be turned off from the command line (``core.fsmonitor``, hooks, the
  untracked cache, submodules);
- asks ``git status`` only when the repository's own configuration holds nothing but keys
  known to run nothing (an allow-list, not a deny-list); otherwise "dirty" is left unknown.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Optional

__all__ = ["git_state"]

_GIT = [
    "git",
    "--no-pager",
    "--no-optional-locks",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "protocol.allow=never",
]

#: Repository-local configuration keys that make git run nothing (lower case, as git lists
#: them; `*` stands for one subsection name).
_SAFE_KEYS = re.compile(
    r"""^(
        core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase
              |precomposeunicode|symlinks|autocrlf|eol|safecrlf|checkstat|trustctime
              |quotepath|abbrev)
      | remote\.[^.]+\.(url|pushurl|fetch|tagopt|prune|mirror|promisor|partialclonefilter)
      | branch\.[^.]+\.(remote|merge|rebase|pushremote|description)
      | user\.(name|email|signingkey)
      | extensions\.(objectformat|partialclone|refstorage|noop)
      | submodule\.[^.]+\.(url|active)
      | (pull|push|fetch|init|gc|color|column|advice|help|i18n|log|merge|rebase)\.[a-z]+
      | lfs\.(repositoryformatversion|url|fetchinclude|fetchexclude)
    )$""",
    re.VERBOSE,
)


def _git(args: list[str], cwd: Optional[str] = None) -> Optional[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_EXTERNAL_DIFF": "",
    }
    try:
        done = subprocess.run(
            [*_GIT, *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=5,
            check=False,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _unsafe_keys(top: str) -> Optional[list[str]]:
    """Keys of the repository's own configuration that are not known to be harmless, or
    None when the configuration cannot be listed."""
    listing = _git(["config", "--local", "--no-includes", "--name-only", "--list"], cwd=top)
    if listing is None:
        return None
    return [key for key in listing.splitlines() if key and not _SAFE_KEYS.match(key.lower())]


def git_state(cwd: Optional[str] = None) -> Optional[dict[str, Any]]:
    """``{"commit", "dirty"}`` for the repository holding `cwd` (default: the current
    directory), or None outside a repository. ``dirty`` is None when it could not be checked
    safely; ``dirty_unchecked`` then says why."""
    found = _git(["rev-parse", "--show-toplevel", "HEAD"], cwd=cwd)
    if found is None:
        return None
    lines = found.split("\n")
    if len(lines) < 2 or not lines[1].strip():
        return None
    top, commit = lines[0].strip(), lines[1].strip()
    state: dict[str, Any] = {"commit": commit, "dirty": None}
    unsafe = _unsafe_keys(top)
    if unsafe is None or unsafe:
        state["dirty_unchecked"] = (
            "the repository's configuration could not be read"
            if unsafe is None
            else "its configuration sets "
            + ", ".join(sorted(set(unsafe))[:5])
            + ", which pacha does not let git act on"
        )
        return state
    status = _git(
        ["status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all"], cwd=top
    )
    state["dirty"] = None if status is None else bool(status.strip())
    return state
