"""Files only their owner can read: Thotto's data directory is 0700 and what it holds that
matters (the SQLite database with its WAL, SHM and lock, the encryption key, the demo app's
secret, the sandbox's state) is 0600.

They are created that way (explicit modes, and the CLI runs with umask 077), and checked at
every start by :func:`keep_private`, which tightens what an older version, a restore or a copy
left readable by others, with a warning; it never stops a start (a file it cannot change is
logged and left as it is).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("thotto.files")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077
#: Files of the data directory that must stay private, where they exist.
DATA_DIR_FILES = ("secret.key", "demo-secret")
SANDBOX_FILES = ("state.json", "posts.jsonl")
SQLITE_SUFFIXES = ("", "-wal", "-shm", ".lock")


def keep_private(directory: str | os.PathLike[str], names: Iterable[str] = ()) -> None:
    """Make ``directory`` (0700) if it is missing, else tighten it to 0700; tighten each of
    ``names`` inside it that exists to 0600 (never loosening one that is stricter)."""
    path = Path(directory)
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as error:
        log.warning("cannot create the directory %s: %s", path, error)
        return
    _tighten(path, PRIVATE_DIR)
    for name in names:
        _tighten(path / name, PRIVATE_FILE)


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    except OSError as error:
        log.warning("cannot check the permissions of %s: %s", path, error)
        return
    if current & ~mode == 0:
        return
    try:
        path.chmod(current & mode)
    except OSError as error:
        log.warning("%s is readable by others (mode %o) and cannot be changed: %s; make it %o",
                    path, current, error, mode)
        return
    log.warning("%s was readable by others (mode %o); made it %o, for its owner only",
                path, current, current & mode)


def keep_data_private(data_dir: str, sqlite_file: str | None, *, uses_key_file: bool = True) -> None:
    """:func:`keep_private` for everything Thotto keeps on disk with these settings: the data
    directory, its key and demo secret, the sandbox's directory if there is one, and the
    SQLite database's files (``sqlite_file``, wherever it lives; None when the database is
    Postgres: see :func:`thotto.store.sqlite_file`). The data directory is made only if
    something will live there (SQLite, or the key file)."""
    uses_sqlite = sqlite_file is not None
    if uses_sqlite or uses_key_file or os.path.isdir(data_dir):
        keep_private(data_dir, DATA_DIR_FILES)
    sandbox = Path(data_dir) / "sandbox"
    if sandbox.is_dir():
        keep_private(sandbox, SANDBOX_FILES)
    if sqlite_file is not None:
        database = Path(sqlite_file)
        if database.parent != Path(data_dir) and not database.parent.exists():
            keep_private(database.parent)  # a directory Thotto makes is private too
        for suffix in SQLITE_SUFFIXES:
            _tighten(database.with_name(database.name + suffix), PRIVATE_FILE)

