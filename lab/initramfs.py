"""
Initramfs
---------

The lab's initramfs: a gzip'd ``newc`` cpio archive (the format of the
kernel's ``usr/gen_init_cpio``) holding a static busybox, ``/init``, the
command agent and, where the kernel has it as a module, ``qemu_fw_cfg.ko``.
Written and read back here, so no root and no ``cpio`` tool are needed.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import stat
from pathlib import Path
from typing import Iterable

from buddyscope.errors import LabError

__all__ = ("CpioEntry", "build_initramfs", "read_cpio", "write_cpio")

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclasses.dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    @property
    def kind(self) -> str:
        return {
            stat.S_IFDIR: "dir",
            stat.S_IFREG: "file",
            stat.S_IFLNK: "symlink",
            stat.S_IFCHR: "char",
        }.get(stat.S_IFMT(self.mode), "other")


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def write_cpio(entries: Iterable[CpioEntry]) -> bytes:
    """Serialize *entries* as a newc archive with its trailer."""
    out = bytearray()
    ino = 0
    for e in [*entries, CpioEntry(_TRAILER, 0)]:
        ino += 1
        name = e.name.encode() + b"\0"
        fields = (
            ino, e.mode, 0, 0, 2 if stat.S_ISDIR(e.mode) else 1, 0, len(e.data),
            0, 0, e.rdev[0], e.rdev[1], len(name), 0,
        )
        out += _MAGIC + b"".join(b"%08X" % f for f in fields) + name
        out += b"\0" * _pad4(110 + len(name))
        out += e.data + b"\0" * _pad4(len(e.data))
    return bytes(out)


def read_cpio(blob: bytes) -> list[CpioEntry]:
    """Parse a newc archive (gzip'd or not) back into its entries."""
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    entries = []
    off = 0
    while True:
        if blob[off : off + 6] != _MAGIC:
            raise LabError(f"not a newc cpio archive at offset {off}")
        f = [int(blob[off + 6 + 8 * i : off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        off += 110
        name = blob[off : off + namesize - 1].decode()
        off += namesize + _pad4(110 + namesize)
        data = blob[off : off + size]
        off += size + _pad4(size)
        if name == _TRAILER:
            return entries
        entries.append(CpioEntry(name, mode, data, (rmaj, rmin)))


def _resource(name: str) -> bytes:
    return importlib.resources.files("buddyscope.lab").joinpath(name).read_bytes()


def build_initramfs(busybox: Path, fw_cfg_module: Path | None = None,
                    extra_files: dict[str, bytes] | None = None) -> bytes:
    """The lab's initramfs, gzip'd.

    :param busybox: a static busybox binary.
    :param fw_cfg_module: ``qemu_fw_cfg.ko`` of the guest kernel, when
        ``CONFIG_FW_CFG_SYSFS=m`` (drgn needs it to find VMCOREINFO).
    :param extra_files: more executables, by absolute path in the guest
        (their directories must be among the initramfs's: /bin, /sbin, /root...).
    """
    d, x, f = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG | 0o644
    entries = [CpioEntry(n, d) for n in ("bin", "dev", "lib", "lib/modules", "lib/modules/share", "proc",
                                         "root", "run", "sbin", "sys", "tmp")]
    entries += [
        # The kernel opens /dev/console for init before devtmpfs is mounted.
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("bin/busybox", x, busybox.read_bytes()),
        CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        CpioEntry("init", x, _resource("init.sh")),
        CpioEntry("bin/agent", x, _resource("agent.sh")),
    ]
    if fw_cfg_module is not None:
        entries.append(CpioEntry("lib/modules/qemu_fw_cfg.ko", f, fw_cfg_module.read_bytes()))
    for path, data in sorted((extra_files or {}).items()):
        entries.append(CpioEntry(path.lstrip("/"), x, data))
    # mtime=0: the same inputs give the same bytes.
    return gzip.compress(write_cpio(entries), compresslevel=6, mtime=0)
