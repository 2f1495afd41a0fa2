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

The tracing state found (``tracing_on``, ``trace_clock``,
``buffer_size_kb``, ``current_tracer``, the kmem events' ``enable``) is
restored afterwards, also on error and Ctrl-C.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

from buddyscope import __version__
from buddyscope.errors import BuddyscopeError
from buddyscope.lab.guest import Guest
from buddyscope.lab.kernels import Kernel
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import EVENTS

__all__ = ("KMEM_EVENTS", "NotApplicable", "record_in_guest", "record_lab", "restore_tracing",
           "save_tracing")

TRACEFS = "/sys/kernel/tracing"
# The kmem page events, as the one parser knows them.
KMEM_EVENTS = EVENTS
# What recording changes, so what is saved and put back. Every kmem event's
# enable is saved, not only the six: _start_tracing turns the others off.
_STATE_FILES = ("tracing_on", "trace_clock", "buffer_size_kb", "current_tracer")
_BOUNDARY = ("paused guest (QMP stop); per-CPU ring_buffer_per_cpu.entries read with drgn in "
             "the same pause as the snapshot (retried while committing != 0); the first "
             "`entries` events of each CPU's per_cpu trace dropped")


class NotApplicable(BuddyscopeError):
    """The workload's ``prepare`` exited 2: it does not apply to this kernel."""


def save_tracing(guest: Guest) -> dict[str, str]:
    """The tracing state the guest has now, file by file."""
    files = " ".join(_STATE_FILES)
    script = (f"cd {TRACEFS} && for f in {files} events/kmem/*/enable; do "
              f"printf '%s\\t' $f; head -c 200 $f 2>/dev/null | tr '\\n' ' '; echo; done")
    out = guest.run(script, check=True).text
    state = {}
    for line in out.splitlines():
        name, _, value = line.partition("\t")
        if value.strip():
            state[name] = value.strip()
    if "buffer_size_kb" in state:
        # "7 (expanded: 1408)" before tracing is first used: the kernel's
        # "expanded" latch is one-way; the size is what can be put back.
        state["buffer_size_kb"] = state["buffer_size_kb"].split()[0]
    return state


def _clock_name(value: str) -> str:
    # trace_clock reads "local global [counter] ...": the bracketed one is current.
    for word in value.split():
        if word.startswith("["):
            return word.strip("[]")
    return value.split()[0]


def restore_tracing(guest: Guest, state: dict[str, str]) -> None:
    """Put back what :func:`save_tracing` found (tracing_on last)."""
    lines = [f"echo 0 > {TRACEFS}/tracing_on"]
    for name, value in state.items():
        if name == "tracing_on":
            continue
        if name == "trace_clock":
            value = _clock_name(value)
        lines.append(f"echo {value} > {TRACEFS}/{name}")
    lines.append(f"echo {state.get('tracing_on', '1')} > {TRACEFS}/tracing_on")
    guest.run("\n".join(lines), check=True)


def _start_tracing(guest: Guest, buffer_kb: int) -> list[str]:
    have = guest.run(f"ls {TRACEFS}/events/kmem/", check=True).text.split()
    events = [e for e in KMEM_EVENTS if e in have]
    script = [f"cd {TRACEFS}", "echo 0 > tracing_on", "echo nop > current_tracer",
              "echo counter > trace_clock", f"echo {buffer_kb} > buffer_size_kb"]
    script += [f"echo 0 > events/kmem/{e}/enable" for e in have if e not in events and e != "enable" and e != "filter"]
    script += [f"echo 1 > events/kmem/{e}/enable" for e in events]
    script += ["echo > trace", "echo 1 > tracing_on"]
    guest.run("\n".join(script), check=True)
    return events


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
                    timeout: float = 600, log: Callable[[str], None] = lambda m: None) -> Fixture:
    """Run ``workload prepare`` untraced, take a paused snapshot at an exact
    boundary in the kmem event stream, run ``workload run`` traced, and return
    the :class:`Fixture`. The guest's tracing state is restored afterwards."""
    from buddyscope.model.ftrace import merge_by_timestamp, parse_lines
    from buddyscope.probe import tracing
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
    saved = save_tracing(g)
    try:
        events = _start_tracing(g, buffer_kb)
        with open_source(SourceSpec(qmp=g.qmp_path, pause=g.pause_path)) as src:
            for attempt in range(20):
                with g.paused():
                    before = tracing.ring_buffer_counters(src.prog)
                    if any(c.committing for c in before.values()):
                        continue
                    snap = src.snapshot()
                    break
            else:
                raise BuddyscopeError("every pause caught a CPU mid-commit in the ring buffer")
            log(f"{name} run (traced)")
            t0 = time.monotonic()
            r = g.run("/run/workload run", timeout=timeout)
            run_seconds = time.monotonic() - t0
            g.run(f"echo 0 > {TRACEFS}/tracing_on", check=True)
            if r.status != 0:
                raise BuddyscopeError(f"{name} run failed with status {r.status}: "
                                      f"{(r.text + r.stderr.decode(errors='replace')).strip()[-400:]}")
            with g.paused():
                after = tracing.ring_buffer_counters(src.prog)
        per_cpu = {}
        lines_by_cpu = {}
        for cpu, c in after.items():
            if not c.lossless:
                raise BuddyscopeError(
                    f"recording invalid: CPU {cpu} lost events (overrun {c.overrun}, commit_overrun "
                    f"{c.commit_overrun}, dropped {c.dropped_events}); use a bigger --buffer-kb"
                )
            text = g.run(f"cat {TRACEFS}/per_cpu/cpu{cpu}/trace", check=True, timeout=timeout).text
            lines = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
            if any("LOST" in l and "EVENTS" in l for l in lines):
                raise BuddyscopeError(f"recording invalid: CPU {cpu}'s trace reports lost events")
            if len(lines) != c.entries:
                raise BuddyscopeError(
                    f"recording invalid: CPU {cpu}'s trace has {len(lines)} events, its ring buffer "
                    f"counted {c.entries}"
                )
            kept = lines[before[cpu].entries:]
            lines_by_cpu[cpu] = kept
            per_cpu[cpu] = parse_lines(kept).events
    finally:
        if g.alive:
            restore_tracing(g, saved)
    merged = merge_by_timestamp(per_cpu)
    trace = [lines_by_cpu[e.cpu][e.lineno - 1] for e in merged]
    counts: dict[str, int] = {}
    for e in merged:
        counts[e.name] = counts.get(e.name, 0) + 1
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
        "boundary": _BOUNDARY,
        "trace_clock": "counter",
        "buffer_size_kb": buffer_kb,
        "events_enabled": events,
        "ring_buffer_before": {str(c): vars(v) for c, v in before.items()},
        "ring_buffer_after": {str(c): vars(v) for c, v in after.items()},
        "run_seconds": round(run_seconds, 2),
        "event_counts": counts,
        "tracing_state_restored": saved,
    }
    fixture = Fixture(snap, trace, provenance)
    fixture.check()
    return fixture
