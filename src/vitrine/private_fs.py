"""Vitrine's data on disk belongs to its owner only: folders 0700, database files 0600.

Modes are set explicitly (``mkdir`` then ``chmod``, ``os.open`` with a mode), never by
changing the process umask, which would leak into every other file the process writes.
A home created by an older version, or by hand, is tightened when Vitrine starts.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite's companions of a database file (WAL mode, or a rollback journal).
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each 0700; an existing folder is left as
    it is (see ``tighten``)."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # another process made it: its mode is that process's business
        os.chmod(folder, PRIVATE_DIR)  # whatever the umask took away or left
    return path


def tighten(path: Path, mode: int) -> bool:
    """Take group and other permissions away from ``path`` when it has any (logged);
    True when the mode was changed. A missing path, or one we may not change, is left."""
    try:
        current = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
    if os.path.islink(path) or not current & 0o077:
        return False
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning(
            "%s is readable by others (mode %o) and cannot be tightened: %s", path, current, exc
        )
        return False
    log.warning("%s was mode %o: tightened to %o (owner only)", path, current, mode)
    return True


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite database file 0600 before SQLite opens it (its -wal and -shm then
    get the same mode from SQLite), and tighten an existing one and its companions."""
    path = Path(path)
    make_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, PRIVATE_FILE)
        os.close(fd)
    for suffix in SQLITE_SUFFIXES:
        tighten(path.with_name(path.name + suffix), PRIVATE_FILE)


def secure_home(home: Path) -> Path:
    """Create the home folder 0700, or tighten an existing one and the folders directly
    in it (blobs/, imports/, models/, index/, ...; their contents are then out of reach
    of anyone else anyway)."""
    make_private_dir(Path(home))
    home = Path(home).resolve()  # a home named through a link: the folder it leads to
    tighten(home, PRIVATE_DIR)
    with os.scandir(home) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                tighten(Path(entry.path), PRIVATE_DIR)
    return home
