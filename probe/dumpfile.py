"""
Dump files
----------

What format a vmcore file is in, and what drgn needs to open it:

- ELF (``/proc/vmcore`` copied, ``makedumpfile -E``, QEMU ``dump-guest-memory``
  in its default format): drgn opens it as it is.
- kdump-compressed (``KDUMP   `` / ``DISKDUMP``; ``makedumpfile -c|-l|-p|-z``,
  what kdump-tools writes): drgn opens it through libkdumpfile. libkdumpfile
  takes the architecture from the header's ``utsname`` only when that looks
  like a Linux one (``uts_looks_sane``: ``sysname`` is ``Linux``, ``release``
  and ``version`` are set). QEMU's kdump formats fill in ``machine`` alone,
  so libkdumpfile has no ``arch.name`` ("kdump_get_string_attr
  (KDUMP_ATTR_ARCH_NAME): Key has no value"); drgn sets it from a
  :class:`drgn.Platform` given to the ``Program`` first, made here from the
  header's ``machine``.
- makedumpfile's *flattened* form (``makedumpfile -F``, and QEMU's kdump
  formats written to a file): a stream of (offset, size, data) records that
  ``makedumpfile -R`` turns back into a kdump file. :func:`unflatten` does
  the same, into a temporary directory.
"""

from __future__ import annotations

import errno
import os
import struct
import tempfile
from pathlib import Path
from typing import Optional

from buddyscope.errors import BuddyscopeError

__all__ = ("ELF", "FLATTENED", "KDUMP", "dump_format", "kdump_machine", "kdump_platform",
           "unflatten")

ELF = "ELF"
KDUMP = "kdump-compressed"
FLATTENED = "makedumpfile flattened"

# makedumpfile.h: struct makedumpfile_header (4096 bytes, signature then
# big-endian int64 type and version), then struct makedumpfile_data_header
# records (big-endian int64 offset, buf_size) each followed by its data,
# ended by one with both -1 (END_FLAG_FLAT_HEADER).
_FLAT_SIGNATURE = b"makedumpfile\0"
_FLAT_HEADER_SIZE = 4096
_TYPE_FLAT_HEADER = 1
_END_FLAG = -1
# struct disk_dump_header: signature[8], header_version (int), then struct
# new_utsname (six fields of __NEW_UTS_LEN + 1 = 65 bytes).
_UTS_LEN = 65
_UTS_MACHINE = 8 + 4 + 4 * _UTS_LEN


def dump_format(path: Path) -> str:
    """:data:`ELF`, :data:`KDUMP` or :data:`FLATTENED`, from the first bytes
    of *path*; anything else is refused."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise BuddyscopeError(f"cannot read {path}: {e.strerror or e}") from None
    if head[:4] == b"\x7fELF":
        return ELF
    if head[:8] in (b"KDUMP   ", b"DISKDUMP"):
        return KDUMP
    if head[:13] == _FLAT_SIGNATURE:
        return FLATTENED
    raise BuddyscopeError(f"{path} is not a vmcore (neither ELF, kdump-compressed nor "
                          "makedumpfile's flattened form)")


def kdump_machine(path: Path) -> str:
    """``utsname.machine`` of a kdump-compressed file's header (may be empty)."""
    with open(path, "rb") as f:
        f.seek(_UTS_MACHINE)
        raw = f.read(_UTS_LEN)
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


# utsname machine -> drgn.Architecture member name.
_ARCHES = {"x86_64": "X86_64", "aarch64": "AARCH64", "arm64": "AARCH64", "ppc64le": "PPC64",
           "ppc64": "PPC64", "s390x": "S390X", "riscv64": "RISCV64", "i386": "I386",
           "i686": "I386", "arm": "ARM"}


def kdump_platform(path: Path):
    """The :class:`drgn.Platform` named by a kdump-compressed file's header,
    or ``None`` when it names none drgn knows."""
    import drgn

    name = _ARCHES.get(kdump_machine(path))
    arch = getattr(drgn.Architecture, name, None) if name else None
    return drgn.Platform(arch) if arch is not None else None


def _copy(fd_in: int, fd_out: int, length: int, off_in: int, off_out: int) -> None:
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(fd_in, fd_out, length - done, off_in + done, off_out + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            # No in-kernel copy between these files: read and write.
            chunk = os.pread(fd_in, min(length - done, 1 << 20), off_in + done)
            n = os.pwrite(fd_out, chunk, off_out + done) if chunk else 0
        if n == 0:
            raise OSError(errno.EIO, f"short read at byte {off_in + done}")
        done += n


def unflatten(src: Path, directory: Path) -> Path:
    """Reassemble makedumpfile's flattened file *src* into a kdump file in
    *directory* (as ``makedumpfile -R OUT < SRC`` does) and return its path.
    Written under a temporary name and renamed when complete."""
    src = Path(src)
    out = Path(directory) / (src.name + ".kdump")
    fd_out = None
    tmp = None
    try:
        with open(src, "rb") as f:
            head = f.read(_FLAT_HEADER_SIZE)
            if len(head) < _FLAT_HEADER_SIZE or head[:13] != _FLAT_SIGNATURE:
                raise BuddyscopeError(f"{src} is not in makedumpfile's flattened form")
            ftype, = struct.unpack_from(">q", head, 16)
            if ftype != _TYPE_FLAT_HEADER:
                raise BuddyscopeError(f"{src}: flattened header of unknown type {ftype}")
            fd_out, tmp = tempfile.mkstemp(dir=directory, prefix=".unflatten-")
            pos = _FLAT_HEADER_SIZE
            size = os.fstat(f.fileno()).st_size
            while True:
                rec = os.pread(f.fileno(), 16, pos)
                if len(rec) < 16:
                    raise BuddyscopeError(f"{src} is a truncated flattened dump (no end record)")
                offset, length = struct.unpack(">qq", rec)
                pos += 16
                if offset == _END_FLAG and length == _END_FLAG:
                    break
                if offset < 0 or length <= 0 or pos + length > size:
                    raise BuddyscopeError(
                        f"{src} is a truncated or corrupt flattened dump (record at byte {pos - 16})")
                _copy(f.fileno(), fd_out, length, pos, offset)
                pos += length
        os.fsync(fd_out)
        os.close(fd_out)
        fd_out = None
        os.replace(tmp, out)
        tmp = None
    except OSError as e:
        raise BuddyscopeError(
            f"cannot reassemble {src} in {directory} ({e.strerror or e}): set TMPDIR to a "
            f"roomier directory, or run `makedumpfile -R OUT < {src}` and open OUT") from None
    finally:
        if fd_out is not None:
            os.close(fd_out)
        if tmp is not None:
            os.unlink(tmp)
    return out
