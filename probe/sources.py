"""
Sources
-------

One interface over every place a snapshot can come from: a live kernel
(``/proc/kcore``), a vmcore, a running QEMU guest (QMP), procfs counts, or a
saved snapshot file. :func:`open_source` picks the backend once; each backend
checks its input and turns drgn and OS errors into one-line
:class:`~buddyscope.errors.BuddyscopeError` messages at this boundary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from buddyscope.errors import BuddyscopeError, GuestGone, QMPError
from buddyscope.model.snapshot import Snapshot

__all__ = ("Source", "SourceSpec", "best_source_spec", "bundled_snapshot", "open_source",
           "read_program")

# How often a paused read is retried when the pause caught a CPU holding a
# zone or pcp lock (the lists may be mid-update).
_PAUSE_RETRIES = 5


@dataclasses.dataclass
class SourceSpec:
    """What the user asked for on the command line."""

    live: bool = False
    vmcore: Optional[Path] = None
    qmp: Optional[Path] = None
    pause: Optional[Path] = None
    procfs: bool = False
    procfs_root: Path = Path("/proc")
    file: Optional[Path] = None
    vmlinux: Optional[Path] = None
    #: Without *vmlinux*: (release, build ID) -> vmlinux files to try before
    #: drgn's standard search (the lab's kernel cache, given by the caller).
    find_vmlinux: Optional[Callable[[str, Optional[str]], Sequence[Path]]] = None
    #: A file: read it again whenever it changed (an exporter's scrapes);
    #: else it is read once.
    reread: bool = False

    @property
    def kind(self) -> Optional[str]:
        """The backend :func:`open_source` opens (its ``Source.kind``): the
        first source given of file, procfs, vmcore, qmp and live."""
        for kind, given in (("file", self.file is not None), ("procfs", self.procfs),
                            ("vmcore", self.vmcore is not None), ("qmp", self.qmp is not None),
                            ("live", self.live)):
            if given:
                return kind
        return None


class Source:
    """Something that gives snapshots; :meth:`snapshot` may be called again
    to refresh (a vmcore gives the same state each time, a file the same
    until it changes)."""

    kind = "?"

    def snapshot(self) -> Snapshot:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileSource(Source):
    kind = "file"

    def __init__(self, path: Path, reread: bool = False):
        self.path = Path(path)
        self.reread = reread
        self._stat = self._identity()
        self._snap = self._load()

    def _identity(self) -> tuple:
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise BuddyscopeError(f"cannot read {self.path}: {e.strerror or e}") from None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def _load(self) -> Snapshot:
        from buddyscope.model.load import load_snapshot

        return load_snapshot(self.path)

    def snapshot(self) -> Snapshot:
        """The file's snapshot; with *reread*, read again when the file
        changed since (an exporter scraping a file another job rewrites),
        one line when it is gone or no longer a snapshot. (Without, no
        syscall: the TUI's reads stay as they were.)"""
        if not self.reread:
            return self._snap
        now = self._identity()
        if now != self._stat:
            self._snap = self._load()
            self._stat = now
        return self._snap


class ProcfsSource(Source):
    kind = "procfs"

    def __init__(self, root: Path):
        self.root = root

    def snapshot(self) -> Snapshot:
        from buddyscope.probe.procfs import read_procfs

        return read_procfs(self.root)


def _import_drgn():
    try:
        import drgn
    except ImportError:
        raise BuddyscopeError("drgn is not installed (pip install drgn)") from None
    # drgn logs "missing debugging symbols ..." on its logger; with no
    # handler Python prints it to stderr ahead of our own one-line error.
    import logging

    drgn_log = logging.getLogger("drgn")
    if not drgn_log.handlers:
        drgn_log.addHandler(logging.NullHandler())
    return drgn


def _vmcoreinfo_field(prog, key: str) -> Optional[str]:
    try:
        text = prog["VMCOREINFO"].string_().decode(errors="replace")
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    return None


def _load_debug_info(prog, vmlinux: Optional[Path], what: str, find_vmlinux=None) -> None:
    """Load *vmlinux* (checked against the kernel's build ID first), else
    what *find_vmlinux* finds for the kernel's release and build ID, else
    drgn's standard search."""
    drgn = _import_drgn()
    want = _vmcoreinfo_field(prog, "BUILD-ID")
    release = _vmcoreinfo_field(prog, "OSRELEASE") or "?"
    from buddyscope.probe.elf import gnu_build_id

    if vmlinux is not None:
        vmlinux = Path(vmlinux).expanduser()
        if not vmlinux.is_file():
            raise BuddyscopeError(f"no such vmlinux: {vmlinux}")
        try:
            have = gnu_build_id(vmlinux)
        except (OSError, ValueError) as e:
            raise BuddyscopeError(f"{vmlinux} is not a vmlinux ({e})") from None
        if want and have and have != want[: len(have)]:
            raise BuddyscopeError(
                f"{vmlinux} does not match {what}: build ID {have[:12]}…, "
                f"the kernel's is {want[:12]}… (release {release})"
            )
        paths = [str(vmlinux)]
    else:
        paths = [str(p) for p in find_vmlinux(release, want)] if find_vmlinux else []
    # drgn logs its own "missing debugging symbols" warning: ours says more.
    drgn_log = logging.getLogger("drgn")
    level = drgn_log.level
    drgn_log.setLevel(logging.ERROR)
    try:
        if vmlinux is not None:
            prog.load_debug_info(paths)
        else:
            # Only vmlinux is needed: the cached lab one, else drgn's enabled
            # finders (standard paths; debuginfod when DEBUGINFOD_URLS is set).
            from buddyscope.probe.debuginfo import enable_debuginfod

            enable_debuginfod(prog)
            prog.load_debug_info(paths, main=True)
    except drgn.MissingDebugInfoError:
        pass
    finally:
        drgn_log.setLevel(level)
    if prog.main_module().wants_debug_file():
        from buddyscope.probe.debuginfo import missing_debug_info_hint

        raise BuddyscopeError(f"no debug info for {what} (release {release}): "
                              + missing_debug_info_hint(release, vmlinux is not None))


def _read(prog, source: str, target: str, paused: bool) -> Snapshot:
    drgn = _import_drgn()
    from buddyscope.probe.mmzone import read_snapshot

    try:
        return read_snapshot(prog, source, target, paused)
    except drgn.FaultError as e:
        raise BuddyscopeError(f"{target}: memory the snapshot needs cannot be read ({e})") from None
    except LookupError as e:
        raise BuddyscopeError(f"{target}: this kernel's types are not what buddyscope reads ({e})") from None
    except OSError as e:
        # A QEMU that exits mid-read closes drgn's QMP connection.
        raise BuddyscopeError(f"{target}: the read broke off ({e}); did the guest go away?") from None


def read_program(prog, source: str, target: str, paused: bool) -> Snapshot:
    """A snapshot of a program drgn already has open, with its debug info
    (buddyscope's drgn commands), errors translated as for every source."""
    return _read(prog, source, target, paused)


class QmpSource(Source):
    """A QEMU guest through drgn's ``Program.set_qemu_qmp``; with *pause*, a
    control QMP socket used to ``stop`` the guest for the read and ``cont``
    it after, also on error."""

    kind = "qmp"

    def __init__(self, qmp: Path, pause: Optional[Path], vmlinux: Optional[Path],
                 find_vmlinux=None):
        drgn = _import_drgn()
        self.qmp, self.pause_path = Path(qmp), pause
        if not self.qmp.exists():
            raise BuddyscopeError(f"no QMP socket at {qmp}")
        self._ctl = None
        if pause is not None:
            from buddyscope.probe.qmp import QMP

            self._ctl = QMP(str(pause))
        self.prog = drgn.Program()
        try:
            self._check_qmp_peer()
        except BaseException:
            self.close()
            raise
        try:
            self.prog.set_qemu_qmp(str(self.qmp))
        except Exception as e:
            self.close()
            raise BuddyscopeError(f"cannot attach drgn to {qmp}: {e}") from None
        if not self.prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL:
            self.close()
            raise BuddyscopeError(
                f"{qmp}: no Linux kernel found (run QEMU with -device vmcoreinfo, and load qemu_fw_cfg in the guest)"
            )
        _load_debug_info(self.prog, vmlinux, f"the guest behind {qmp}", find_vmlinux)

    def _check_qmp_peer(self) -> None:
        # drgn waits forever on a socket that never greets; look first.
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(str(self.qmp))
            greeting = s.recv(4096)
        except OSError as e:
            if isinstance(e, socket.timeout):
                raise BuddyscopeError(
                    f"{self.qmp} does not greet like QMP: not a QMP socket, or another "
                    f"client (such as drgn) holds it"
                ) from None
            if isinstance(e, ConnectionRefusedError) and not self.qmp.is_socket():
                # connect() to a regular file says "Connection refused".
                raise BuddyscopeError(f"{self.qmp} is not a socket (give QEMU's -qmp "
                                      f"unix:PATH,server=on,wait=off path)") from None
            raise BuddyscopeError(f"cannot connect to {self.qmp}: {e.strerror or e}") from None
        finally:
            s.close()
        if b'"QMP"' not in greeting:
            raise BuddyscopeError(f"{self.qmp} is not a QMP socket")

    def snapshot(self) -> Snapshot:
        if self._ctl is None:
            return _read(self.prog, "qmp", str(self.qmp), paused=False)
        # A guest someone else paused stays paused: only undo our own stop.
        if self._ctl.status() != "running":
            return _read(self.prog, "qmp", str(self.qmp), paused=True)
        snap = None
        for _ in range(_PAUSE_RETRIES):
            self._ctl.execute("stop")
            try:
                snap = _read(self.prog, "qmp", str(self.qmp), paused=True)
            finally:
                with contextlib.suppress(QMPError, GuestGone):
                    self._ctl.execute("cont")
            if not any(a.kind == "locked" for a in snap.capture.anomalies):
                break
            time.sleep(0.02)
        assert snap is not None
        return snap

    def close(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
        # QEMU serves one client per QMP socket: drgn's connection goes with
        # its Program, which drgn's helpers can keep in reference cycles
        # (closures cached in prog.cache): collect it now.
        self.prog = None
        gc.collect()


def _check_vmcore(path: Path) -> None:
    """An ELF vmcore whose segments run past the end of the file is truncated."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return  # kdump or flattened: probe.dumpfile told them apart
            if len(head) < 64:
                raise BuddyscopeError(f"{path} is a truncated vmcore (ELF header cut off)")
            if head[4:6] != b"\x02\x01":
                return  # not ELF64 little-endian: drgn says what it makes of it
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            if phnum and phentsize < _PHDR64_SIZE:
                raise BuddyscopeError(f"{path} is not a vmcore (program headers of "
                                      f"{phentsize} bytes, not {_PHDR64_SIZE})")
            if phoff + phentsize * phnum > size:
                raise BuddyscopeError(f"{path} is a truncated vmcore (program headers cut off)")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError as e:
        raise BuddyscopeError(f"cannot read {path}: {e.strerror or e}") from None
    if len(table) < phentsize * phnum:
        raise BuddyscopeError(f"{path} is a truncated vmcore (program headers cut off)")
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_offset + p_filesz > size:
            raise BuddyscopeError(
                f"{path} is a truncated vmcore: segment {i} ends at byte {p_offset + p_filesz}, "
                f"the file has {size}"
            )


# sizeof(Elf64_Phdr)
_PHDR64_SIZE = 56


class VmcoreSource(Source):
    kind = "vmcore"

    def __init__(self, path: Path, vmlinux: Optional[Path], find_vmlinux=None):
        drgn = _import_drgn()
        self.path = Path(path)
        if not self.path.is_file():
            raise BuddyscopeError(f"no such vmcore: {path}")
        from buddyscope.probe import dumpfile

        self.format = dumpfile.dump_format(self.path)
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None
        core = self.path
        if self.format == dumpfile.FLATTENED:
            # drgn reads kdump files only whole: reassemble a copy.
            self._tmpdir = tempfile.TemporaryDirectory(prefix="buddyscope-vmcore-")
            core = dumpfile.unflatten(self.path, Path(self._tmpdir.name))
        _check_vmcore(core)
        # QEMU's kdump headers name only the machine: libkdumpfile needs the
        # architecture given (see probe/dumpfile.py).
        platform = dumpfile.kdump_platform(core) if self.format != dumpfile.ELF else None
        self.prog = drgn.Program(platform) if platform is not None else drgn.Program()
        try:
            self.prog.set_core_dump(str(core))
        except Exception as e:
            raise BuddyscopeError(f"{path} is not a vmcore drgn can open ({e})") from None
        if not self.prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL:
            raise BuddyscopeError(f"{path} is a core dump but not of a Linux kernel (no VMCOREINFO)")
        _load_debug_info(self.prog, vmlinux, f"the kernel of {path}", find_vmlinux)

    def snapshot(self) -> Snapshot:
        return _read(self.prog, "vmcore", str(self.path), paused=True)

    def close(self) -> None:
        self.prog = None
        if self._tmpdir is not None:
            gc.collect()  # drgn's Program holds the reassembled file open
            self._tmpdir.cleanup()
            self._tmpdir = None


def _keep_heap() -> None:
    """Keep this process's freed heap memory instead of giving it back.

    Reading the live kernel allocates tens of MB (``struct page`` chunks):
    every page the reader faults in or unmaps is itself a page-allocator
    event in the state being read. With glibc's heap neither trimmed nor
    bypassed by ``mmap`` for big blocks, a second read reuses the first
    one's pages, so a retried read (``record --live``) can see no events of
    its own."""
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(m_trim_threshold, 1 << 30)
        libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest


class LiveSource(Source):
    kind = "live"

    def __init__(self, vmlinux: Optional[Path], find_vmlinux=None):
        drgn = _import_drgn()
        if os.geteuid() != 0:
            raise BuddyscopeError("reading the live kernel needs root (/proc/kcore)")
        if not os.path.exists("/proc/kcore"):
            raise BuddyscopeError("this kernel has no /proc/kcore: try --procfs for counts")
        self.prog = drgn.Program()
        try:
            self.prog.set_kernel()
        except Exception as e:
            raise BuddyscopeError(f"cannot open the live kernel: {e}") from None
        _load_debug_info(self.prog, vmlinux, "the running kernel", find_vmlinux)
        _keep_heap()

    def snapshot(self) -> Snapshot:
        return _read(self.prog, "live", "/proc/kcore", paused=False)


def bundled_snapshot() -> Path:
    """The recorded snapshot that ships with buddyscope (a 6.1 guest)."""
    import importlib.resources

    return Path(str(importlib.resources.files("buddyscope.fixtures")
                    .joinpath("snapshots/6.1-2cpu-512m.json.gz")))


def best_source_spec(procfs_root: Path = Path("/proc"),
                     find_vmlinux=None) -> tuple[SourceSpec, str]:
    """The best source this machine offers, and why: the live kernel with
    debug info (root, ``/proc/kcore``; *find_vmlinux* as in
    :class:`SourceSpec`), else procfs counts, else the bundled recorded
    snapshot."""
    notes = []
    if os.geteuid() == 0 and os.path.exists("/proc/kcore"):
        try:
            LiveSource(None, find_vmlinux).close()
            return SourceSpec(live=True, find_vmlinux=find_vmlinux), "the live kernel"
        except BuddyscopeError as e:
            notes.append(str(e))
    else:
        notes.append("the live kernel needs root and /proc/kcore")
    if (procfs_root / "buddyinfo").exists():
        why = "procfs counts (no PFNs: " + "; ".join(notes) + ")"
        return SourceSpec(procfs=True, procfs_root=procfs_root), why
    return SourceSpec(file=bundled_snapshot()), "a bundled recorded snapshot (no /proc here)"


def open_source(spec: SourceSpec) -> Source:
    """The backend for *spec*, checked and ready to give snapshots."""
    kind = spec.kind
    if kind == "file":
        return FileSource(spec.file, spec.reread)
    if kind == "procfs":
        return ProcfsSource(spec.procfs_root)
    if kind == "vmcore":
        return VmcoreSource(spec.vmcore, spec.vmlinux, spec.find_vmlinux)
    if kind == "qmp":
        return QmpSource(spec.qmp, spec.pause, spec.vmlinux, spec.find_vmlinux)
    if kind == "live":
        return LiveSource(spec.vmlinux, spec.find_vmlinux)
    raise BuddyscopeError("no source: give --live, --vmcore FILE, --qmp SOCKET, --procfs or a snapshot file")
