"""
ELF notes
---------

Just enough ELF reading to name a ``vmlinux`` by its GNU build ID and to tell
a static executable (no ``PT_INTERP``) from a dynamic one.
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ("gnu_build_id", "is_static_executable")

_NT_GNU_BUILD_ID = 3
_PT_INTERP = 3
_PT_NOTE = 4
_SHT_NOTE = 7


def _header(f) -> tuple[str, bytes]:
    ident = f.read(64)
    if len(ident) < 64 or ident[:4] != b"\x7fELF" or ident[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    return ("<" if ident[5] == 1 else ">"), ident


def _notes(data: bytes, endian: str):
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(endian + "III", data, off)
        off += 12
        name = data[off : off + namesz]
        off += (namesz + 3) & ~3
        desc = data[off : off + descsz]
        off += (descsz + 3) & ~3
        yield name.rstrip(b"\0"), ntype, desc


def gnu_build_id(path: Path) -> str | None:
    """The GNU build ID of the ELF file *path* as hex, or None if it has none.

    Reads the section headers (a ``vmlinux`` has ``.notes``), not the whole file.
    """
    with open(path, "rb") as f:
        e, ident = _header(f)
        shoff, = struct.unpack_from(e + "Q", ident, 0x28)
        shentsize, shnum = struct.unpack_from(e + "HH", ident, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        for i in range(shnum):
            sh = table[i * shentsize : (i + 1) * shentsize]
            sh_type, = struct.unpack_from(e + "I", sh, 4)
            if sh_type != _SHT_NOTE:
                continue
            offset, size = struct.unpack_from(e + "QQ", sh, 0x18)
            f.seek(offset)
            for name, ntype, desc in _notes(f.read(size), e):
                if name == b"GNU" and ntype == _NT_GNU_BUILD_ID:
                    return desc.hex()
    return None


def is_static_executable(path: Path) -> bool:
    """Whether *path* is an ELF executable without a program interpreter."""
    try:
        with open(path, "rb") as f:
            e, ident = _header(f)
            phoff, = struct.unpack_from(e + "Q", ident, 0x20)
            phentsize, phnum = struct.unpack_from(e + "HH", ident, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except (OSError, ValueError, struct.error):
        return False
    for i in range(phnum):
        p_type, = struct.unpack_from(e + "I", table, i * phentsize)
        if p_type == _PT_INTERP:
            return False
    return True
