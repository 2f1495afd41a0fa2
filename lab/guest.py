"""
Lab guests
----------

A Debian kernel booted under QEMU (always ``-accel tcg``) with the lab's
initramfs. Each guest has, in a private run directory:

- ``console.sock``: ttyS0, the kernel console and an interactive shell; all of
  it is logged to ``console.log``, and a panic on it ends the boot clearly;
- ``agent.sock``: ttyS1, the command channel (see ``agent.sh``);
- ``ctl.sock``: a QMP monitor this object holds (stop, cont, dump, quit);
- ``qmp.sock``: a QMP monitor for drgn's ``Program.set_qemu_qmp``;
- ``pause.sock``: a QMP monitor left free for another process's ``--pause``.

No QEMU process outlives its owner: QEMU gets ``PR_SET_PDEATHSIG`` (SIGKILL
when the thread that booted it dies), every guest is shut down at interpreter
exit, and only the pid this module started is ever signalled.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import dataclasses
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from buddyscope.errors import GuestError, GuestGone, LabError, QMPError
from buddyscope.lab.initramfs import build_initramfs
from buddyscope.lab.kernels import Kernel, find_busybox
from buddyscope.probe.qmp import QMP

if TYPE_CHECKING:
    import drgn

__all__ = ("CommandResult", "Guest", "qemu_binary")

_PANIC = b"Kernel panic - not syncing"
_PR_SET_PDEATHSIG = 1
_live_guests: "weakref.WeakSet[Guest]" = weakref.WeakSet()


def qemu_binary() -> str:
    """Path of ``qemu-system-x86_64``, or a :class:`LabError` saying what to install."""
    path = shutil.which("qemu-system-x86_64")
    if not path:
        raise LabError("no qemu-system-x86_64 on PATH: install Debian's qemu-system-x86")
    return path


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What one command run in the guest gave back, byte for byte."""

    status: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class _Serial:
    """A QEMU serial chardev socket, read by a thread into *on_data*."""

    def __init__(self, path: Path, on_data: Callable[[bytes], None]):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self._on_data = on_data
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name=f"serial {path.name}")
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self._on_data(data)
        except OSError:
            pass
        finally:
            self.closed.set()
            self._on_data(b"")

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise GuestGone(f"guest serial port closed: {e.strerror or e}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=2)


class _Console:
    """ttyS0: logged to a file; watched for a panic; optionally echoed to a sink."""

    def __init__(self, log_path: Path):
        self.log = open(log_path, "wb", buffering=0)
        self.lock = threading.Lock()
        self.total = 0  # bytes seen so far
        self.tail = b""
        self.last_data = time.monotonic()
        self.panic: str | None = None
        self.sink: Callable[[bytes], None] | None = None

    def on_data(self, data: bytes) -> None:
        if not data:
            return
        self.log.write(data)
        self.last_data = time.monotonic()
        with self.lock:
            self.total += len(data)
            self.tail = (self.tail + data)[-65536:]
        if self.panic is None and _PANIC in self.tail:
            line = self.tail[self.tail.index(_PANIC):].split(b"\n")[0]
            self.panic = line.decode(errors="replace").strip()
        if self.sink:
            self.sink(data)

    def since(self, offset: int) -> bytes:
        """What the console printed after byte *offset* (as far as the tail reaches)."""
        keep = self.total - offset
        return self.tail[-keep:] if keep > 0 else b""

    def last_line(self) -> str:
        lines = [l for l in self.tail.decode(errors="replace").splitlines() if l.strip()]
        return lines[-1].strip() if lines else "(nothing on the console)"


class _Agent:
    """ttyS1: the line protocol of ``agent.sh``."""

    def __init__(self) -> None:
        self._buf = b""
        self._cond = threading.Condition()
        self._eof = False

    def on_data(self, data: bytes) -> None:
        with self._cond:
            if data:
                self._buf += data
            else:
                self._eof = True
            self._cond.notify_all()

    def read_line(self, deadline: float, alive: Callable[[], bool]) -> str | None:
        """The next line, or None at the deadline; raises GuestGone at EOF."""
        with self._cond:
            while b"\n" not in self._buf:
                if self._eof or not alive():
                    raise GuestGone("the guest went away (its QEMU process exited)")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))
            line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")


def _pdeathsig(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl.
        if os.getppid() != parent:
            os._exit(1)
    return preexec


class Guest:
    """A running lab guest. Use :meth:`boot`; shut it down with :meth:`shutdown`
    or a ``with`` block.

    QEMU dies with the thread that booted it (``PR_SET_PDEATHSIG``): boot from
    a thread that lives as long as the guest is needed.
    """

    def __init__(self, kernel: Kernel, smp: int, mem_mib: int, rundir: Path,
                 append: str = "", share_root: bool = False):
        self.kernel = kernel
        self.share_root = share_root
        self.smp = smp
        self.mem_mib = mem_mib
        self.rundir = rundir
        self.append = append
        self.boot_seconds = 0.0
        self.release: str | None = None
        self._proc: subprocess.Popen | None = None
        self._ctl: QMP | None = None
        self._console = _Console(rundir / "console.log")
        self._agent = _Agent()
        self._serials: list[_Serial] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._drgn_source: Any = None  # a probe QmpSource: it holds qmp.sock

    # -- paths other processes attach to ------------------------------------
    @property
    def qmp_path(self) -> Path:
        """QMP socket for drgn's ``Program.set_qemu_qmp`` (``--qmp``)."""
        return self.rundir / "qmp.sock"

    @property
    def pause_path(self) -> Path:
        """A free control QMP socket for another process (``--pause``)."""
        return self.rundir / "pause.sock"

    @property
    def console_log(self) -> Path:
        return self.rundir / "console.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ------------------------------------------------------------
    @classmethod
    def boot(cls, kernel: Kernel, smp: int = 1, mem_mib: int = 512,
             timeout: float = 120.0, retries: int = 1, append: str = "",
             log: Callable[[str], None] | None = None,
             extra_files: dict[str, bytes] | None = None,
             share_root: bool = False) -> "Guest":
        """Boot *kernel* with *smp* vCPUs and *mem_mib* MiB and wait for its shell.

        A panic at boot is retried *retries* times (a 7.2 guest with more
        vCPUs than host cores once panicked in ``sched_clock_idle_wakeup_event``
        and booted the next time); a guest with no shell after *timeout*
        seconds is killed and reported. *extra_files* (guest path -> bytes)
        are put in the initramfs as executables, e.g. a static workload binary.
        *share_root* exports this machine's root read-only over virtio-9p
        (see :mod:`buddyscope.lab.hostroot`) and loads the modules it needs.
        """
        qemu = qemu_binary()
        busybox = find_busybox()
        if smp < 1 or mem_mib < 64:
            raise LabError(f"a guest needs at least 1 vCPU and 64 MiB (asked {smp}, {mem_mib})")
        log = log or (lambda m: print(f"buddyscope: {m}", file=sys.stderr))
        if share_root:
            from buddyscope.lab import hostroot

            extra_files = {**(extra_files or {}), **hostroot.initramfs_files(kernel, log)}
        initrd = build_initramfs(busybox, kernel.fw_cfg_module, extra_files)
        _remove_orphaned_rundirs()
        for attempt in range(retries + 1):
            rundir = Path(tempfile.mkdtemp(prefix="bs-lab-"))
            # Whose guest this is: a run directory whose owner died without
            # cleaning up (SIGKILL) is removed by the next boot.
            (rundir / "owner.pid").write_text(f"{os.getpid()}\n")
            guest = cls(kernel, smp, mem_mib, rundir, append, share_root)
            try:
                (rundir / "initrd.gz").write_bytes(initrd)
                guest._start(qemu, timeout)
                return guest
            except GuestError as e:
                panicked = guest._console.panic is not None
                guest.shutdown()
                if panicked and attempt < retries:
                    log(f"{e}; booting again")
                    continue
                raise
            except BaseException:
                guest.shutdown()
                raise
        raise AssertionError("unreachable")

    def _qemu_args(self, qemu: str) -> list[str]:
        r = self.rundir
        args = [
            qemu, "-accel", "tcg", "-nodefaults", "-no-reboot",
            "-display", "none", "-monitor", "none", "-S",
            "-smp", str(self.smp), "-m", f"{self.mem_mib}M",
            "-kernel", str(self.kernel.vmlinuz), "-initrd", str(r / "initrd.gz"),
            "-append", f"console=ttyS0 nokaslr panic=-1 {self.append}".strip(),
            "-device", "vmcoreinfo",
        ]
        if self.share_root:
            from buddyscope.lab.hostroot import qemu_share_args

            args += qemu_share_args()
        for name in ("console", "agent"):
            args += ["-chardev", f"socket,id={name},path={r / name}.sock,server=on,wait=off",
                     "-serial", f"chardev:{name}"]
        for name in ("ctl", "qmp", "pause"):
            args += ["-chardev", f"socket,id={name},path={r / name}.sock,server=on,wait=off",
                     "-mon", f"chardev={name},mode=control"]
        return args

    def _start(self, qemu: str, timeout: float) -> None:
        t0 = time.monotonic()
        stderr = open(self.rundir / "qemu.stderr", "wb")
        self._proc = subprocess.Popen(
            self._qemu_args(qemu), stdin=subprocess.DEVNULL, stdout=stderr,
            stderr=stderr, preexec_fn=_pdeathsig(os.getpid()), cwd=self.rundir,
        )
        stderr.close()
        _live_guests.add(self)
        # -S: QEMU waits, paused, until the console, agent and QMP are connected.
        deadline = time.monotonic() + 10
        while not all((self.rundir / f"{n}.sock").exists()
                      for n in ("console", "agent", "ctl", "qmp", "pause")):
            if not self.alive:
                err = (self.rundir / "qemu.stderr").read_text(errors="replace").strip()
                raise GuestError(f"qemu exited at start: {err.splitlines()[-1] if err else '?'}")
            if time.monotonic() > deadline:
                raise GuestError("qemu did not open its sockets within 10 s")
            time.sleep(0.02)
        self._serials.append(_Serial(self.rundir / "console.sock", self._console.on_data))
        self._serials.append(_Serial(self.rundir / "agent.sock", self._agent.on_data))
        self._ctl = QMP(str(self.rundir / "ctl.sock"))
        self._ctl.execute("cont")
        deadline = t0 + timeout
        name = f"{self.kernel.release} ({self.smp} vCPU, {self.mem_mib} MiB)"
        while True:
            try:
                line = self._agent.read_line(min(deadline, time.monotonic() + 0.5),
                                             lambda: self.alive)
            except GuestGone:
                self._wait_exit(2)
                if self._console.panic:
                    raise GuestError(f"{name} panicked at boot: {self._console.panic}") from None
                raise GuestError(f"{name} exited during boot: {self._console.last_line()}") from None
            if line is not None and line.startswith("@@READY "):
                self.release = line.split(" ", 1)[1].strip()
                break
            if self._console.panic:
                self._wait_exit(2)
                raise GuestError(f"{name} panicked at boot: {self._console.panic}")
            if time.monotonic() > deadline:
                raise GuestError(
                    f"{name} gave no shell within {timeout:g} s; "
                    f"last console line: {self._console.last_line()}"
                )
        self.boot_seconds = time.monotonic() - t0

    def _wait_exit(self, seconds: float) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(seconds)

    def shutdown(self) -> None:
        """Quit QEMU (QMP ``quit``, then SIGKILL to its own pid) and remove the run
        directory. Safe to call twice, and on a guest that never booted."""
        if self._drgn_source is not None:
            self._drgn_source.close()
            self._drgn_source = None
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(QMPError, GuestGone, OSError, AttributeError):
                self._ctl.execute("quit", timeout=2)  # type: ignore[union-attr]
            self._wait_exit(3)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        if self._ctl is not None:
            self._ctl.close()
        for s in self._serials:
            s.close()
        self._serials.clear()
        self._console.log.close()
        _live_guests.discard(self)
        if os.environ.get("BUDDYSCOPE_KEEP_RUNDIR") != "1":
            shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- the command channel -------------------------------------------------
    def run(self, script: str, timeout: float = 60.0, check: bool = False) -> CommandResult:
        """Run *script* with the guest's ``sh``; return its exit status and output.

        :param check: raise :class:`GuestError` on a non-zero exit status.
        """
        with self._lock:
            if not self.alive:
                raise GuestGone("the guest went away (its QEMU process exited)")
            ident = next(self._ids)
            payload = base64.b64encode(script.encode()).decode()
            self._serials[1].write(f"{ident} {payload}\n".encode())
            deadline = time.monotonic() + timeout
            lines: list[str] = []
            while True:
                line = self._agent.read_line(deadline, lambda: self.alive)
                if line is None:
                    raise GuestError(f"command did not finish within {timeout:g} s: "
                                     f"{script.splitlines()[0][:60] if script else ''}")
                if line.startswith("@@END "):
                    _, end_id, rc = line.split()
                    if int(end_id) == ident:
                        break
                lines.append(line)
        result = self._decode(ident, lines, int(rc))
        if check and result.status != 0:
            err = result.stderr.decode(errors="replace").strip() or result.text.strip()
            raise GuestError(f"guest command failed with status {result.status}: "
                             f"{script.splitlines()[0][:60]}: {err[-300:]}")
        return result

    def put_file(self, path: str, data: bytes, mode: int = 0o644, chunk: int = 48 * 1024) -> None:
        """Write *data* to *path* in the guest (through the command channel)."""
        self.run(f": > {path}", check=True)
        for off in range(0, len(data), chunk):
            b64 = base64.b64encode(data[off : off + chunk]).decode()
            self.run(f"printf '%s' '{b64}' | base64 -d >> {path}", check=True)
        got = self.run(f"chmod {mode:o} {path} && wc -c < {path}", check=True).text.strip()
        if int(got) != len(data):
            raise GuestError(f"put_file {path}: the guest has {got} bytes, sent {len(data)}")

    @staticmethod
    def _decode(ident: int, lines: list[str], rc: int) -> CommandResult:
        begin = [i for i, l in enumerate(lines) if l.startswith(f"@@BEGIN {ident} ")]
        sep = [i for i, l in enumerate(lines) if l == f"@@SEP {ident}"]
        if not begin or not sep:
            raise GuestError(f"command channel garbled (command {ident}): no markers")
        _, _, nout, nerr = lines[begin[-1]].split()
        b, s = begin[-1], sep[-1]
        out = base64.b64decode("".join(lines[b + 1 : s]))
        err = base64.b64decode("".join(lines[s + 1 :]))
        if len(out) != int(nout) or len(err) != int(nerr):
            raise GuestError(
                f"command channel garbled (command {ident}): got {len(out)}/{len(err)} "
                f"bytes, the guest sent {nout}/{nerr}"
            )
        return CommandResult(rc, out, err)

    # -- the console ------------------------------------------------------------
    def console_sink(self, sink: Callable[[bytes], None] | None) -> None:
        """Also hand everything the console prints to *sink* (None stops)."""
        self._console.sink = sink

    def console_write(self, data: bytes) -> None:
        """Type *data* on the guest's console."""
        self._serials[0].write(data)

    def console_offset(self) -> int:
        """Bytes the console has printed so far (for :meth:`wait_console`)."""
        return self._console.total

    def wait_console(self, text: str, timeout: float = 30.0, since: int | None = None) -> None:
        """Wait until the console prints *text* after byte *since* (default:
        now), e.g. a marker a command writes to ``/dev/console``."""
        want = text.encode()
        start = self._console.total if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            with self._console.lock:
                seen = self._console.since(start)
            if want in seen:
                return
            if not self.alive:
                raise GuestGone("the guest went away (its QEMU process exited)")
            if time.monotonic() > deadline:
                raise GuestError(f"the console did not print {text!r} within {timeout:g} s")
            time.sleep(0.005)

    def console_idle_seconds(self) -> float:
        """Seconds since the console last printed anything."""
        return time.monotonic() - self._console.last_data

    # -- QMP control -----------------------------------------------------------
    def _qmp(self) -> QMP:
        if self._ctl is None or not self.alive:
            raise GuestGone("the guest went away (its QEMU process exited)")
        return self._ctl

    def pause(self) -> None:
        """Stop the vCPUs (QMP ``stop``): memory no longer changes."""
        self._qmp().execute("stop")

    def resume(self) -> None:
        """Let the vCPUs run again (QMP ``cont``)."""
        self._qmp().execute("cont")

    @property
    def status(self) -> str:
        return self._qmp().status()

    @contextlib.contextmanager
    def paused(self):
        """Pause for the block; resume after it, also on error."""
        self.pause()
        try:
            yield self
        finally:
            if self.alive:
                self.resume()

    @contextlib.contextmanager
    def paused_after(self, script: str, settle: float = 2.0):
        """Run *script*, pause the guest the moment it is done, and resume it
        after the block. The guest sleeps *settle* seconds after the script,
        and the script's output travels back only after that, so the state in
        the block is the one the script left (and saw, for a procfs read).
        Yields an object whose ``result`` is the script's
        :class:`CommandResult` once the block is over.
        """
        marker = f"@@PAUSE-HERE-{next(self._ids)}"
        holder = types.SimpleNamespace(result=None, error=None)

        def target() -> None:
            try:
                holder.result = self.run(
                    f"( {script} ) > /run/pa.out 2>&1; rc=$?; echo {marker} > /dev/console; "
                    f"sleep {settle}; cat /run/pa.out; rm -f /run/pa.out; exit $rc",
                    timeout=120 + settle)
            except Exception as e:  # reported after the block
                holder.error = e

        since = self.console_offset()
        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        self.wait_console(marker, timeout=120, since=since)
        with self.paused():
            yield holder
        worker.join()
        if holder.error is not None:
            raise holder.error

    def dump_vmcore(self, path: Path) -> Path:
        """Write guest memory to *path* as an ELF vmcore (QMP ``dump-guest-memory``)."""
        path = Path(path).resolve()
        self._qmp().execute(
            "dump-guest-memory",
            {"paging": False, "protocol": f"file:{path}"},
            timeout=600,
        )
        return path

    def attach_drgn(self) -> "drgn.Program":
        """A drgn :class:`Program` reading this guest's memory over ``qmp.sock``,
        with the kernel's ``-dbg`` vmlinux loaded (checked against the guest's
        build ID), as ``--qmp`` opens it.

        QEMU serves one client per monitor socket, so the same Program is
        returned on every call.
        """
        if self._drgn_source is None:
            from buddyscope.probe.sources import QmpSource

            self._drgn_source = QmpSource(self.qmp_path, None, self.kernel.vmlinux)
        return self._drgn_source.prog


def _remove_orphaned_rundirs() -> None:
    for d in Path(tempfile.gettempdir()).glob("bs-lab-*"):
        try:
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass  # someone else's live process


@atexit.register
def _shutdown_all() -> None:
    for guest in list(_live_guests):
        with contextlib.suppress(Exception):
            guest.shutdown()
