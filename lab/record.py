"""
Recording
---------

A consistent snapshot of a lab guest plus every kmem page event after it,
with an exact boundary:

1. enable the kmem page events (``trace_clock`` ``counter``: one global
   order across CPUs), clear the buffer, start tracing;
2. pause the guest and read each CPU's ring-buffer counters with drgn
   (``global_trace.array_buffer.buffer->buffers[cpu]``); if a CPU is
   mid-commit, resume and pause again; take the snapshot in the same pause;
   resume;
3. run the workload, stop tracing, read the counters again;
4. read ``per_cpu/cpuN/trace`` and drop each CPU's first ``entries`` events
   (those came before the snapshot); the rest must number exactly the
   counter's difference, with nothing overrun or dropped.

On a live host (``record --live -- COMMAND``) the kernel cannot be paused:
the counters are read before and after the snapshot, and the snapshot is
retried until no event was traced while it was read. If none is clean, the
events of the last read are split by where the snapshot has each page
(:mod:`buddyscope.model.boundary`): those it does not show yet stay in the
trace. That is best effort (the lists were read one after another while the
kernel ran) and the fixture says so (``best_effort``,
``boundary_overlap_events``, ``boundary_overlap_kept``). A read that caught
a list mid-change (torn) is retried too, after the probe has walked that
list again (:func:`buddyscope.probe.pagemap.walk_until_whole`); a kept
snapshot that is still torn is named (``boundary_torn``).

The tracing state found (``tracing_on``, ``trace_clock``,
``buffer_size_kb``, ``current_tracer``, the kmem events' ``enable``) is
restored afterwards, also on error and Ctrl-C (set-up and restore are
:mod:`buddyscope.probe.tracing`'s); a marker on the traced machine
(:mod:`buddyscope.probe.recordstate`) lets the next run or ``record --restore``
restore it after a SIGKILL, and makes a second recorder refuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Callable, ContextManager, Optional, Sequence

from buddyscope import __version__
from buddyscope.errors import BuddyscopeError
from buddyscope.lab.guest import CommandResult, Guest
from buddyscope.lab.kernels import Kernel, find_vmlinux
from buddyscope.model.fixture import Fixture
from buddyscope.model.snapshot import TORN_KINDS
from buddyscope.probe import tracing

__all__ = ("LocalHost", "NotApplicable", "record_in_guest", "record_lab", "record_live",
           "restore_live")

_BOUNDARY = ("paused guest (QMP stop); per-CPU ring_buffer_per_cpu.entries read with drgn in "
             "the same pause as the snapshot (retried while committing != 0); the first "
             "`entries` events of each CPU's per_cpu trace dropped")
_LIVE_BOUNDARY = ("running kernel, not paused (best effort): per-CPU ring_buffer_per_cpu.entries "
                  "read with drgn before and after the snapshot, retried (the ring buffer "
                  "cleared between attempts, after one read to warm up) until no event was "
                  "traced while it was read, else the last attempt is kept, and while a "
                  "list was caught mid-change (torn) even after the probe walked it again "
                  "(pcp lists first, struct page read afresh); the `entries` "
                  "read after it are dropped from each CPU's per_cpu trace, except events "
                  "traced during the read that the snapshot does not show yet "
                  "(model/boundary.py: the page's place in the snapshot), which are kept")


class NotApplicable(BuddyscopeError):
    """The workload's ``prepare`` exited 2: it does not apply to this kernel."""


class LocalHost:
    """This machine, run like a lab guest: ``run(script)`` with ``sh``, for
    recording the live kernel (``record --live``)."""

    alive = True

    def __init__(self, tracefs: str):
        self.tracefs = tracefs

    def run(self, script: str, timeout: float = 60.0, check: bool = False) -> CommandResult:
        try:
            p = subprocess.run(["sh", "-c", script], capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BuddyscopeError(f"timed out after {timeout:.0f} s: {script.splitlines()[0]}") from None
        if check and p.returncode != 0:
            raise BuddyscopeError(f"`{script.splitlines()[0]}` failed with status {p.returncode}: "
                                  f"{p.stderr.decode(errors='replace').strip()[-300:]}")
        return CommandResult(p.returncode, p.stdout, p.stderr)


def record_lab(kernel: Kernel, workload: Path, smp: int = 1, mem_mib: int = 512,
               buffer_kb: int = 32768, timeout: float = 600,
               log: Callable[[str], None] = lambda m: None) -> Fixture:
    """Boot *kernel* with *smp* vCPUs and *mem_mib* MiB and record *workload*
    in it (:func:`record_in_guest`)."""
    try:
        script = Path(workload).read_bytes()
    except OSError as e:
        raise BuddyscopeError(f"cannot read workload {workload}: {e.strerror or e}") from None
    with Guest.boot(kernel, smp=smp, mem_mib=mem_mib) as g:
        log(f"{kernel.release}: booted in {g.boot_seconds:.1f} s")
        return record_in_guest(g, script, Path(workload).name, buffer_kb, timeout, log)


def record_in_guest(g: Guest, script: bytes, name: str, buffer_kb: int = 32768,
                    timeout: float = 600, log: Callable[[str], None] = lambda m: None,
                    paused: bool = True) -> Fixture:
    """Run ``workload prepare`` untraced, take a paused snapshot at an exact
    boundary in the kmem event stream, run ``workload run`` traced, and return
    the :class:`Fixture`. The guest's tracing state is restored afterwards.

    :param paused: ``False`` records the running guest the way
        :func:`record_live` records a host (best effort), which is how that
        path is checked against a real kernel here.
    """
    from buddyscope.probe.sources import SourceSpec, open_source

    kernel = g.kernel
    g.put_file("/run/workload", script, 0o755)
    log(f"{name} prepare")
    r = g.run("/run/workload prepare", timeout=timeout)
    if r.status == 2:
        raise NotApplicable(f"{name} does not apply to {kernel.release}: {r.text.strip()[-200:]}")
    if r.status != 0:
        raise BuddyscopeError(f"{name} prepare failed with status {r.status}: "
                              f"{(r.text + r.stderr.decode(errors='replace')).strip()[-400:]}")

    def run_workload() -> None:
        log(f"{name} run (traced)")
        r = g.run("/run/workload run", timeout=timeout)
        g.run(f"echo 0 > {tracing.TRACEFS}/tracing_on", check=True)
        if r.status != 0:
            raise BuddyscopeError(f"{name} run failed with status {r.status}: "
                                  f"{(r.text + r.stderr.decode(errors='replace')).strip()[-400:]}")

    spec = SourceSpec(qmp=g.qmp_path, pause=g.pause_path if paused else None,
                      find_vmlinux=find_vmlinux)
    with open_source(spec) as src:
        snap, trace, counts, rec = _record(g, src, g.paused if paused else contextlib.nullcontext,
                                           run_workload, buffer_kb, timeout, log=log)
    provenance = {
        "kernel_release": kernel.release,
        "kernel_series": kernel.series,
        "kernel_package_version": kernel.version,
        "suite": kernel.suite,
        "vmlinux_build_id": kernel.vmlinux_build_id,
        "nr_cpus": g.smp,
        "mem_mib": g.mem_mib,
        "workload": name,
        "workload_sha256": hashlib.sha256(script).hexdigest(),
        "buddyscope": __version__,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "boundary": _BOUNDARY if paused else _LIVE_BOUNDARY,
        **rec,
    }
    if not paused:
        provenance["best_effort"] = True
    fixture = Fixture(snap, trace, provenance)
    fixture.check()
    return fixture


def record_live(command: Sequence[str], vmlinux: Optional[Path] = None, buffer_kb: int = 32768,
                attempts: int = 20, log: Callable[[str], None] = lambda m: None) -> Fixture:
    """``record --live -- COMMAND``: record the running kernel while *command*
    runs. Best effort: the kernel cannot be paused, so the snapshot is retried
    until no kmem event was traced while it was read; the provenance says how
    many events overlapped the read of the snapshot that was kept."""
    from buddyscope.probe.sources import SourceSpec, open_source

    if not command:
        raise BuddyscopeError("record --live needs a command to run: record --live -- COMMAND...")
    if os.geteuid() != 0:
        raise BuddyscopeError("recording the live kernel needs root (tracefs and /proc/kcore)")
    host = LocalHost(tracing.find_tracefs())
    from buddyscope.probe import recordstate

    recordstate.refuse_if_in_use(host)  # before loading hundreds of MB of debug info
    shown = " ".join(shlex.quote(c) for c in command)

    def run_workload() -> None:
        log(f"{shown} (traced)")
        try:
            p = subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            raise BuddyscopeError(f"cannot run {command[0]}: {e.strerror or e}") from None
        finally:
            host.run(f"echo 0 > {host.tracefs}/tracing_on", check=True)
        if p.returncode != 0:
            raise BuddyscopeError(f"{shown} failed with status {p.returncode}: "
                                  f"{p.stdout.decode(errors='replace').strip()[-400:]}")

    with open_source(SourceSpec(live=True, vmlinux=vmlinux, find_vmlinux=find_vmlinux)) as src:
        snap, trace, counts, rec = _record(host, src, contextlib.nullcontext, run_workload,
                                           buffer_kb, timeout=600, attempts=attempts, log=log,
                                           clear_between_attempts=True)
    import psutil

    provenance = {
        "kernel_release": snap.kernel.release,
        "vmlinux_build_id": snap.kernel.build_id,
        "nr_cpus": snap.kernel.nr_cpus,
        "mem_mib": psutil.virtual_memory().total >> 20,
        "workload": shown,
        "workload_sha256": hashlib.sha256(shown.encode()).hexdigest(),
        "buddyscope": __version__,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "best_effort": True,
        "boundary": _LIVE_BOUNDARY,
        **rec,
    }
    fixture = Fixture(snap, trace, provenance)
    fixture.check()
    return fixture


def restore_live(log: Callable[[str], None] = lambda m: None) -> str:
    """``record --restore``: put back the tracing state a killed ``record
    --live`` left on this machine (see :mod:`buddyscope.probe.recordstate`)."""
    from buddyscope.probe import recordstate, tracing

    if os.geteuid() != 0:
        raise BuddyscopeError("restoring the tracing state needs root (tracefs)")
    host = LocalHost(tracing.find_tracefs())
    done = recordstate.recover(host, log)
    if done is None:
        group = tracing.KPROBE_GROUP
        if host.run(f"test -d {host.tracefs}/events/{group}").status == 0:
            tracing.remove_kprobes(host)
            return f"no buddyscope record marker, but removed kprobe events of group {group}"
        return f"nothing to restore: no tracing left behind by buddyscope record on {host.tracefs}"
    return done


def _not_yet_shown(snap, overlap_lines: dict[int, list[str]]) -> dict[int, list[str]]:
    """Per CPU, the lines of events traced while *snap* was read that it
    does not show yet (:func:`buddyscope.model.boundary.not_yet_shown`), in
    their order."""
    from buddyscope.model.boundary import not_yet_shown
    from buddyscope.model.ftrace import merge_by_timestamp, parse_lines

    per_cpu = {cpu: parse_lines(lines).events for cpu, lines in overlap_lines.items()}
    merged = merge_by_timestamp(per_cpu)
    keep = not_yet_shown(snap, merged)
    out: dict[int, list[str]] = {}
    for e, k in zip(merged, keep):
        if k:
            out.setdefault(e.cpu, []).append(overlap_lines[e.cpu][e.lineno - 1])
    return out


# What a list walk of a running kernel meets when a list changes under it
# (model/snapshot.py TORN_KINDS): an entry unlinked mid-walk (LIST_POISON), a
# walk cut short against its count, a page that left the list's order. No
# split of the overlapping events can mend such a snapshot (a 6.1 busy
# guest: cpu1's pcp list read as 170 pages of 2132, then 206 misses). The
# probe walks such a list again before it gives up (mmzone.LIVE_REWALKS).
_TORN = TORN_KINDS


def torn_read(snap) -> bool:
    """Whether *snap*, read from a running kernel, caught a list mid-change."""
    return any(a.kind in _TORN for a in snap.capture.anomalies)


def _record(host, src, pause: Callable[[], ContextManager], run_workload: Callable[[], None],
            buffer_kb: int, timeout: float, attempts: int = 20,
            log: Callable[[str], None] = lambda m: None,
            clear_between_attempts: bool = False):
    """The recording both kinds share: start tracing, place a snapshot in the
    event stream (inside *pause*), run the workload, read every CPU's events
    after the boundary and check none was lost. Restores the tracing state.

    Returns the snapshot, the merged trace lines, the event counts and the
    recording's part of the provenance."""
    from buddyscope.model.ftrace import merge_by_timestamp, parse_lines

    from buddyscope.probe import recordstate

    tracefs = tracing.tracefs_of(host)
    # A killed recorder's changes are undone first (and a running one refused),
    # so that what is saved is the state before any recorder.
    left_behind = recordstate.recover(host, log)
    saved = tracing.save_tracing(host)
    recordstate.claim(host, saved)
    kprobes = None
    try:
        kprobes = tracing.bulk_alloc_kprobes(src.prog)
        # kswapd's reclaim window (ZONE_RECLAIM_ACTIVE), which no tracepoint shows.
        kprobes = (kprobes or []) + (tracing.reclaim_kprobes(src.prog) or []) or None
        # vmstat's silent pcp->high decay (6.7+).
        kprobes = (kprobes or []) + (tracing.pcp_decay_kprobes(src.prog) or []) or None
        # vmstat's folds of each CPU's NR_FREE_PAGES deltas (quiet_vmstat in idle).
        kprobes = (kprobes or []) + (tracing.vmstat_refresh_kprobes(src.prog) or []) or None
        # Compaction's free page isolation.
        kprobes = (kprobes or []) + (tracing.compaction_kprobes(src.prog) or []) or None
        # Watermark changes (min_free_kbytes; THP turned on).
        kprobes = (kprobes or []) + (tracing.watermark_kprobes(src.prog) or []) or None
        if clear_between_attempts:
            # A first read loads what drgn looks up lazily and the reader's
            # own memory: tens of thousands of events of its own while it reads
            # (measured in 6.1 guests), so no attempt of it could be clean.
            # Read before tracing starts: traced, those events once overran a
            # 32 MiB buffer on a quiet 6.1 guest (CI: overrun 420362) and
            # voided a recording that had not begun.
            src.snapshot()
        events = tracing.start_tracing(host, buffer_kb, kprobes)
        best = None
        tried = []  # per attempt: events traced while its snapshot was read, and how long
        # Up to as many again while the read is torn (below): a live kernel's
        # only usable attempt is its last (the buffer is cleared before each).
        for attempt in range(1, 2 * attempts + 1):
            if clear_between_attempts:
                # Drop what was traced before this attempt (a live kernel's
                # retries would otherwise pile up its reader's own allocations
                # in the buffer, and the clear resets the overrun counters
                # too) and count afresh. Not for a guest read from outside:
                # the clear's own command would then overlap the next read.
                host.run(f"echo > {tracefs}/trace", check=True)
            with pause():
                before = tracing.ring_buffer_counters(src.prog)
                if any(c.committing for c in before.values()):
                    continue
                t_read = time.monotonic()
                snap = src.snapshot()
                t_read = time.monotonic() - t_read
                # Paused, nothing moves; live, events traced while the
                # snapshot was read may or may not show in it.
                after_read = tracing.ring_buffer_counters(src.prog)
            overlap = {cpu: after_read[cpu].entries - c.entries for cpu, c in before.items()}
            torn = torn_read(snap)
            walks = snap.capture.notes.get("walks") or {}
            tried.append({"overlap_events": sum(overlap.values()), "read_seconds": round(t_read, 3),
                          "torn": torn,
                          # lists walked again because they came out torn
                          "rewalks": sum(n - 1 for z in walks.values() for l in z.values()
                                         for n in l)})
            best = (snap, after_read, overlap, attempt, before)
            if not torn and (not any(overlap.values()) or attempt >= attempts):
                break
        if best is None:
            raise BuddyscopeError("every attempt caught a CPU mid-commit in the ring buffer")
        snap, before, overlap, attempt, read_start = best
        t0 = time.monotonic()
        run_workload()
        run_seconds = time.monotonic() - t0
        with pause():
            after = tracing.ring_buffer_counters(src.prog)
        per_cpu = {}
        lines_by_cpu = {}
        overlap_lines: dict[int, list[str]] = {}
        overlap_kept = 0
        for cpu, c in after.items():
            if not c.lossless:
                raise BuddyscopeError(
                    f"recording invalid: CPU {cpu} lost events (overrun {c.overrun}, commit_overrun "
                    f"{c.commit_overrun}, dropped {c.dropped_events}); use a bigger --buffer-kb"
                )
            text = host.run(f"cat {tracefs}/per_cpu/cpu{cpu}/trace", check=True, timeout=timeout).text
            lines = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
            if any("LOST" in l and "EVENTS" in l for l in lines):
                raise BuddyscopeError(f"recording invalid: CPU {cpu}'s trace reports lost events")
            if len(lines) != c.entries:
                raise BuddyscopeError(
                    f"recording invalid: CPU {cpu}'s trace has {len(lines)} events, its ring buffer "
                    f"counted {c.entries}"
                )
            kept = lines[before[cpu].entries:] if cpu in before else lines
            if overlap.get(cpu):
                # What was traced while the kept snapshot was read: the
                # snapshot shows some of it (below).
                overlap_lines[cpu] = lines[read_start[cpu].entries:before[cpu].entries]
            lines_by_cpu[cpu] = kept
        if overlap_lines:
            # Events of the read the snapshot does not show yet go back in.
            late = _not_yet_shown(snap, overlap_lines)
            for cpu, extra in late.items():
                lines_by_cpu[cpu] = extra + lines_by_cpu[cpu]
            overlap_kept = sum(len(v) for v in late.values())
        for cpu, kept in lines_by_cpu.items():
            per_cpu[cpu] = parse_lines(kept).events
    finally:
        if host.alive:
            if kprobes:
                tracing.remove_kprobes(host)
            tracing.restore_tracing(host, saved)
            recordstate.release(host)
    merged = merge_by_timestamp(per_cpu)
    trace = [lines_by_cpu[e.cpu][e.lineno - 1] for e in merged]
    counts: dict[str, int] = {}
    for e in merged:
        counts[e.name] = counts.get(e.name, 0) + 1
    rec = {
        "trace_clock": "counter",
        "buffer_size_kb": buffer_kb,
        "events_enabled": events,
        "kprobes": [d for d in kprobes or () if d.split()[0].split("/")[1] in events],
        "ring_buffer_before": {str(c): vars(v) for c, v in before.items()},
        "ring_buffer_after": {str(c): vars(v) for c, v in after.items()},
        "run_seconds": round(run_seconds, 2),
        "event_counts": counts,
        "tracing_state_restored": saved,
    }
    rec["boundary_attempt"] = attempt
    rec["boundary_attempts"] = tried
    if torn_read(snap):
        rec["boundary_torn"] = sorted({a.where for a in snap.capture.anomalies if a.kind in _TORN})
    if left_behind:
        rec["restored_left_behind"] = left_behind
    if any(overlap.values()):
        rec["boundary_overlap_events"] = {str(c): n for c, n in overlap.items() if n}
        if sum(len(l) for l in overlap_lines.values()) <= 2000:  # kept for diagnosis
            rec["boundary_overlap_lines"] = {str(c): l for c, l in overlap_lines.items()}
        rec["boundary_overlap_kept"] = overlap_kept
    return snap, trace, counts, rec
