"""
Watching a traced guest
-----------------------

``buddyscope tui --lab SERIES``: a lab guest whose kmem page events stay
traced while the TUI watches it, so that every refresh can say which of the
model's predictions came true.

Each :meth:`LabWatcher.refresh` pauses the guest, reads each CPU's
ring-buffer counters with drgn and takes the snapshot in that same pause
(as :mod:`buddyscope.lab.record` places its snapshot), and resumes. The
events between two refreshes are exactly each CPU's events number
``entries_before`` to ``entries_after`` (``trace_clock`` ``counter``; the
trace file is read without stopping tracing: ``options/pause-on-trace`` 0):
a *window* that starts at the earlier snapshot
(:func:`buddyscope.model.window.score_window` replays it). A window with lost
events (overrun, dropped, a count that does not match) is invalid.

The non-consuming trace file is read from its start each time, so once a
CPU's buffer holds *rearm_events* events it is cleared after a refresh and a
new snapshot is taken right after as the next window's start (the events in
between belong to no window).

The guest is ours: its tracing state is not restored; :meth:`close` shuts it
down (and the ``buddyscope`` kprobe events with it).
"""

from __future__ import annotations

import dataclasses
import gzip
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from buddyscope.errors import BuddyscopeError
from buddyscope.lab.guest import Guest
from buddyscope.lab.kernels import Kernel, find_vmlinux
from buddyscope.lab.record import NotApplicable
from buddyscope.model.ftrace import PageEvent, TraceError, merge_by_timestamp, parse_lines
from buddyscope.model.snapshot import Snapshot
from buddyscope.probe.tracing import TRACEFS, start_tracing

__all__ = ("LabWatcher", "Refresh", "Window")

#: Seconds the workload loop sleeps between two ``FILE run``.
WORKLOAD_PAUSE = 2.0


@dataclasses.dataclass(frozen=True)
class Window:
    """The events traced between two refreshes' snapshots."""

    #: 1 for the events between refresh 0 and refresh 1, and so on.
    index: int
    #: The snapshot the window starts at (the earlier refresh's).
    before: Snapshot
    #: Every kmem page event of the window, merged in the counter clock's
    #: order, numbered as a fixture's trace (``lineno`` 1..n).
    events: List[PageEvent]
    lines: List[str]
    #: Why some events may be missing ("" when the window is complete).
    invalid: str = ""
    #: CPU -> (entries at the start, entries at the end).
    entries: Dict[int, tuple] = dataclasses.field(default_factory=dict)
    #: Seconds spent reading the trace.
    read_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Refresh:
    """What one refresh gives: the state now and, after the first, the window
    that ended with it."""

    snapshot: Snapshot
    window: Optional[Window]
    #: Seconds the guest was paused for the counters and the snapshot.
    paused_seconds: float
    seconds: float
    #: The ring buffer was cleared after this window; *snapshot* is the
    #: snapshot taken right after, where the next window starts.
    rearmed: bool = False


class LabWatcher:
    """A booted lab guest with the kmem page events on, refreshed window by
    window. Make one with :meth:`open` (or around a booted guest); close it."""

    kind = "lab"

    def __init__(self, guest: Guest, buffer_kb: int = 32768, rearm_events: int = 30000,
                 owns_guest: bool = True):
        from buddyscope.probe import tracing
        from buddyscope.probe.sources import SourceSpec, open_source

        self.guest = guest
        self.buffer_kb = buffer_kb
        self.rearm_events = rearm_events
        self.owns_guest = owns_guest
        self.workload: Optional[str] = None
        self._lock = threading.Lock()
        self._prev: Optional[tuple] = None   # (snapshot, counters)
        self._windows = 0
        self._closed = False
        self.source = open_source(SourceSpec(qmp=guest.qmp_path, pause=guest.pause_path,
                                             find_vmlinux=find_vmlinux))
        try:
            kprobes = tracing.bulk_alloc_kprobes(self.source.prog)
            self.events_enabled = start_tracing(guest, buffer_kb, kprobes)
            # Reading the trace file must not stop tracing while it is open
            # (options/pause-on-trace 1 does; a kernel without the option
            # always does).
            opt = f"{TRACEFS}/options/pause-on-trace"
            if guest.run(f"test -e {opt} && echo 0 > {opt}").status != 0:
                raise BuddyscopeError(
                    f"{guest.kernel.release} has no {opt}: reading the trace would stop "
                    "tracing, so windows cannot be exact")
            self._gzip = guest.run("command -v gzip").status == 0
        except BaseException:
            self.source.close()
            raise

    @property
    def label(self) -> str:
        g = self.guest
        what = f"lab {g.kernel.release} ({g.smp} vCPU, {g.mem_mib} MiB)"
        return what + (f", {self.workload} looping" if self.workload else "")

    # -- life cycle ---------------------------------------------------------------
    @classmethod
    def open(cls, kernel: Kernel, smp: int = 1, mem_mib: int = 512,
             workload: Optional[Path] = None, buffer_kb: int = 32768,
             log: Callable[[str], None] = lambda m: None) -> "LabWatcher":
        """Boot *kernel*, start tracing, and start *workload* looping in the
        background. Boot from a thread that lives as long as the guest (the
        guest dies with it). On any error the guest is shut down."""
        script = None
        if workload is not None:
            try:
                script = Path(workload).read_bytes()
            except OSError as e:
                raise BuddyscopeError(f"cannot read workload {workload}: "
                                      f"{e.strerror or e}") from None
        g = Guest.boot(kernel, smp=smp, mem_mib=mem_mib, log=log)
        try:
            log(f"{kernel.release}: booted in {g.boot_seconds:.1f} s")
            w = cls(g, buffer_kb)
            if script is not None:
                w.start_workload(script, Path(workload).name, log=log)
            return w
        except BaseException:
            g.shutdown()
            raise

    def start_workload(self, script: bytes, name: str, every: float = WORKLOAD_PAUSE,
                       log: Callable[[str], None] = lambda m: None) -> None:
        """``FILE prepare``, then ``FILE run`` in the background, again and
        again with *every* seconds between runs."""
        g = self.guest
        g.put_file("/run/workload", script, 0o755)
        log(f"{name} prepare")
        r = g.run("/run/workload prepare", timeout=600)
        if r.status == 2:
            raise NotApplicable(f"{name} does not apply to {g.kernel.release}: "
                                f"{r.text.strip()[-200:]}")
        if r.status != 0:
            raise BuddyscopeError(f"{name} prepare failed with status {r.status}: "
                                  f"{(r.text + r.stderr.decode(errors='replace')).strip()[-400:]}")
        g.run(f"setsid sh -c 'while :; do /run/workload run; sleep {every:g}; done' "
              "</dev/null >/dev/null 2>&1 &", check=True)
        self.workload = name

    def close(self) -> None:
        """Shut the guest down (it is ours); waits for a refresh under way."""
        got = self._lock.acquire(timeout=30)
        try:
            if self._closed:
                return
            self._closed = True
            self.source.close()
            if self.owns_guest:
                self.guest.shutdown()
        finally:
            if got:
                self._lock.release()

    def __enter__(self) -> "LabWatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- refreshing -------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return self.refresh().snapshot

    def _mark(self):
        """Pause; read the counters and the snapshot in that pause; resume."""
        from buddyscope.probe import tracing

        for _ in range(20):
            t0 = time.monotonic()
            with self.guest.paused():
                counters = tracing.ring_buffer_counters(self.source.prog)
                if any(c.committing for c in counters.values()):
                    continue
                snap = self.source.snapshot()
            return snap, counters, time.monotonic() - t0
        raise BuddyscopeError("every attempt caught a CPU mid-commit in the ring buffer")

    def refresh(self) -> Refresh:
        """Take the next snapshot; after the first, read the window since the
        previous one."""
        with self._lock:
            if self._closed:
                raise BuddyscopeError("the lab guest is shut down")
            t0 = time.monotonic()
            snap, counters, paused = self._mark()
            prev, self._prev = self._prev, (snap, counters)
            if prev is None:
                return Refresh(snap, None, paused, time.monotonic() - t0)
            self._windows += 1
            window = self._read_window(self._windows, prev[0], prev[1], counters)
            rearmed = False
            if window.invalid or max((c.entries for c in counters.values()), default=0) \
                    >= self.rearm_events:
                # Start again from an empty buffer: what the trace file has
                # to skip stays short, and a loss does not outlive its window.
                self.guest.run(f"echo > {TRACEFS}/trace", check=True)
                snap, counters, p2 = self._mark()
                paused += p2
                self._prev = (snap, counters)
                rearmed = True
            return Refresh(snap, window, paused, time.monotonic() - t0, rearmed)

    def _read_window(self, index: int, before_snap: Snapshot, before: dict, after: dict) -> Window:
        t0 = time.monotonic()
        entries = {cpu: (before[cpu].entries if cpu in before else None, c.entries)
                   for cpu, c in after.items()}

        def invalid(why: str) -> Window:
            return Window(index, before_snap, [], [], why, entries, time.monotonic() - t0)

        for cpu, c in after.items():
            if not c.lossless:
                return invalid(f"CPU {cpu} lost events (overrun {c.overrun}, commit_overrun "
                               f"{c.commit_overrun}, dropped {c.dropped_events})")
            b = before.get(cpu)
            if b is None or c.entries < b.entries:
                return invalid(f"CPU {cpu}'s ring buffer was reset during the window")
        lines_by_cpu: Dict[int, List[str]] = {}
        per_cpu: Dict[int, List[PageEvent]] = {}
        for cpu, c in after.items():
            a, b = before[cpu].entries, c.entries
            if b == a:
                continue
            lines = self._trace_lines(cpu, a, b)
            if any("LOST" in l and "EVENTS" in l for l in lines):
                return invalid(f"CPU {cpu}'s trace reports lost events")
            if len(lines) != b - a:
                return invalid(f"CPU {cpu}'s trace has {len(lines)} events in the window, its "
                               f"ring buffer counted {b - a}")
            lines_by_cpu[cpu] = lines
            try:
                per_cpu[cpu] = parse_lines(lines).events
            except TraceError as e:
                return invalid(f"CPU {cpu}: {e}")
        try:
            merged = merge_by_timestamp(per_cpu)
        except TraceError as e:
            return invalid(str(e))
        trace = [lines_by_cpu[e.cpu][e.lineno - 1] for e in merged]
        events = parse_lines(trace).events
        return Window(index, before_snap, events, trace, "", entries, time.monotonic() - t0)

    def _trace_lines(self, cpu: int, a: int, b: int) -> List[str]:
        """Events *a* + 1 .. *b* of *cpu*'s trace file (1-based; comments and
        blank lines are not events)."""
        awk = (f"awk -v a={a} -v b={b} '/^#/ || NF == 0 {{ next }} {{ n++ }} n > b {{ exit }} "
               f"n > a {{ print }}' {TRACEFS}/per_cpu/cpu{cpu}/trace")
        r = self.guest.run(f"set -o pipefail 2>/dev/null; {awk} | gzip -1" if self._gzip else awk,
                           timeout=600, check=True)
        data = gzip.decompress(r.stdout) if self._gzip else r.stdout
        return data.decode(errors="replace").splitlines()
