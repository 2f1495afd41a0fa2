"""Files written whole or not at all: a temporary name in the same
directory, fsync'd, renamed over the target, the directory fsync'd. A run
killed at any point leaves the old file (and at worst a ``.NAME.PID.tmp``
that the next write of the same file removes once its writer is gone).

A symbolic link is followed: its target is replaced and the link kept. A
target that is not a regular file (``/dev/null``, a FIFO, a terminal) is
written in place, as a shell's ``>`` would: renaming over it would put a
file where the device was."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Optional

__all__ = ("in_place", "write_atomic")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):-len(".tmp")]
            if pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[: 1 << 20])
        view = view[n:]


def in_place(path) -> bool:
    """Whether :func:`write_atomic` writes *path* where it is, not renaming
    a file over it: it is (or links to) neither a regular file nor a
    directory."""
    try:
        st = os.stat(path)   # through links, /dev/stdout's magic one too
    except OSError:
        return False
    return not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode)


def write_atomic(path: Path, data: bytes, mode: Optional[int] = None) -> None:
    """Replace *path* with *data* so that it is never seen half written.
    A new file gets the usual permissions (0666 less the umask), an existing
    one keeps its own; *mode*, if given, is the file's either way."""
    if in_place(path):
        # Opened as given: realpath of /dev/stdout on a pipe is "pipe:[N]".
        fd = os.open(path, os.O_WRONLY)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return
    path = Path(os.path.realpath(path))
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)   # exactly: open's mode is cut by the umask
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # The rename itself is durable once the directory is.
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
