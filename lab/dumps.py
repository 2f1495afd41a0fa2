"""
Dumps
-----

Every vmcore format a host user may have, made from one paused lab guest:

- ``elf``: QMP ``dump-guest-memory`` (paging off), what ``--vmcore`` always read;
- ``qemu-kdump-zlib`` (and ``-lzo``, ``-snappy`` where this QEMU has them):
  QMP ``dump-guest-memory`` with ``format: kdump-*`` to a file, which QEMU
  writes in makedumpfile's flattened form;
- ``d31-zlib``, ``d31-lzo``, ``d31-snappy``, ``d31-zstd``, ``d31-elf``,
  ``d31-zlib-flattened``: what kdump-tools writes, ``makedumpfile -c|-l|-p|-z|-E
  -d 31`` (and ``-F``), run on the ELF dump, for each compression this
  makedumpfile was built with.

makedumpfile 1.7.2 (Debian bookworm) reads the program headers as if they
followed the ELF header (``get_elf64_phdr``: ``sizeof(Elf64_Ehdr) + i *
sizeof(Elf64_Phdr)``), as in ``/proc/vmcore``; QEMU 7.2 writes its section
header there and the program headers after it, so makedumpfile finds no
PT_LOAD ("Can't get the number of PT_LOAD"). :func:`vmcore_layout` rewrites
the dump with the program headers first; the VMCOREINFO note QEMU adds
(``-device vmcoreinfo``) is all else makedumpfile needs.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Callable

from buddyscope.errors import LabError
from buddyscope.lab.guest import Guest

__all__ = ("dump_formats", "makedumpfile_compressions", "makedumpfile_support",
           "vmcore_layout")

# makedumpfile option -> the name of its compression in `makedumpfile -v`.
_COMPRESSIONS = {"zlib": "-c", "lzo": "-l", "snappy": "-p", "zstd": "-z"}
_EHDR = 64
_PHDR = struct.Struct("<IIQQQQQQ")


def makedumpfile_compressions() -> list[str]:
    """The compressions this machine's ``makedumpfile`` was built with
    (zlib always); [] when it is not installed."""
    exe = shutil.which("makedumpfile")
    if exe is None:
        return []
    out = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout
    have = ["zlib"]
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in _COMPRESSIONS and words[1] == "enabled":
            have.append(words[0])
    return have


def makedumpfile_support(compression: str) -> str:
    """What ``makedumpfile -h`` says of *compression* ("snappy", "zstd",
    "LZO"), with its version: e.g. ``makedumpfile: version 1.7.2 (released on
    20 Oct 2022): snappy support: disabled ('-p' option will be ignored.)``."""
    exe = shutil.which("makedumpfile")
    if exe is None:
        return "makedumpfile is not installed (apt-get install makedumpfile)"
    version = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout.splitlines()
    lines = subprocess.run([exe, "-h"], capture_output=True, text=True).stdout.splitlines()
    said = f"{compression} support: not mentioned by makedumpfile -h"
    for i, line in enumerate(lines):
        if line.strip().lower() == f"{compression.lower()} support:" and i + 1 < len(lines):
            said = f"{line.strip()} {lines[i + 1].strip()}"
            break
    return f"{version[0].strip() if version else 'makedumpfile'}: {said}"


def vmcore_layout(src: Path, dst: Path) -> Path:
    """Copy ELF vmcore *src* to *dst* with the program headers right after
    the ELF header and the segments after them, as ``/proc/vmcore`` has it."""
    with open(src, "rb") as f:
        eh = bytearray(f.read(_EHDR))
        phoff, = struct.unpack_from("<Q", eh, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
        if phentsize != _PHDR.size or phnum == 0xFFFF:
            raise LabError(f"{src}: not a 64-bit ELF vmcore with fewer than 65535 segments")
        f.seek(phoff)
        phdrs = [list(_PHDR.unpack(f.read(_PHDR.size))) for _ in range(phnum)]
    offset = _EHDR + _PHDR.size * phnum
    moves = []
    for p in phdrs:
        moves.append((p[2], offset, p[5]))  # p_offset, new offset, p_filesz
        p[2] = offset
        offset += p[5]
    struct.pack_into("<Q", eh, 0x20, _EHDR)           # e_phoff
    struct.pack_into("<Q", eh, 0x28, 0)               # e_shoff: no sections
    struct.pack_into("<HHH", eh, 0x3A, 64, 0, 0)      # e_shentsize, e_shnum, e_shstrndx
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fo.write(eh + b"".join(_PHDR.pack(*p) for p in phdrs))
        fo.flush()
        for old, new, size in moves:
            done = 0
            while done < size:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), size - done, old + done, new + done)
                if n == 0:
                    raise LabError(f"{src} is shorter than its program headers say")
                done += n
    return dst


def _makedumpfile(args: list[str], stdout=None) -> None:
    p = subprocess.run(["makedumpfile", *args], stdout=stdout or subprocess.PIPE,
                       stderr=subprocess.PIPE, text=stdout is None)
    if p.returncode != 0:
        err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode(errors="replace")
        raise LabError(f"makedumpfile {' '.join(args)} failed: {err.strip()[-300:]}")


def dump_formats(guest: Guest, directory: Path,
                 log: Callable[[str], None] = lambda m: None) -> dict[str, Path]:
    """Dump *guest* once paused in every format QEMU and makedumpfile offer
    here; name -> file. The guest runs again afterwards."""
    directory = Path(directory)
    out: dict[str, Path] = {}
    qmp = guest._qmp()
    qemu_formats = qmp.execute("query-dump-guest-memory-capability")["formats"]
    with guest.paused():
        out["elf"] = guest.dump_vmcore(directory / "elf")
        for fmt in qemu_formats:
            if fmt.startswith("kdump-"):
                path = (directory / f"qemu-{fmt}").resolve()
                qmp.execute("dump-guest-memory",
                            {"paging": False, "format": fmt, "protocol": f"file:{path}"},
                            timeout=600)
                out[f"qemu-{fmt}"] = path
    log(f"QEMU formats: {', '.join(sorted(out))}")
    compressions = makedumpfile_compressions()
    if compressions:
        kexec = vmcore_layout(out["elf"], directory / "elf-vmcore-layout")
        for c in compressions:
            _makedumpfile([_COMPRESSIONS[c], "-d", "31", str(kexec), str(directory / f"d31-{c}")])
            out[f"d31-{c}"] = directory / f"d31-{c}"
        _makedumpfile(["-E", "-d", "31", str(kexec), str(directory / "d31-elf")])
        out["d31-elf"] = directory / "d31-elf"
        with open(directory / "d31-zlib-flattened", "wb") as f:
            _makedumpfile(["-F", "-c", "-d", "31", str(kexec)], stdout=f)
        out["d31-zlib-flattened"] = directory / "d31-zlib-flattened"
        os.unlink(kexec)
        log(f"makedumpfile -d 31: {', '.join(compressions)}, ELF, flattened")
    return out
