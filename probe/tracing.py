"""
Tracing
-------

The ftrace ring buffer's own per-CPU counters, read with drgn. Read while the
kernel is paused they mark exactly where a snapshot falls in the event stream:
the first ``entries`` events of each CPU came before it.

And the kprobe events that make the bulk allocator visible: it takes pages
off pcp lists with no kmem event (``alloc_pages_bulk`` has no tracepoint).

And tracefs itself: setting up the kmem page events (and those kprobes),
saving the tracing state found first and putting it back after. These work
on a *host*: anything with ``run(script, timeout=, check=)`` returning a
result with ``status`` and ``text``, and optionally ``tracefs`` (where it is
mounted; default :data:`TRACEFS`), such as a lab guest or this machine.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Optional

from buddyscope.errors import BuddyscopeError
from buddyscope.model.events import ALLOC_PAGES_BULK, ALLOC_PAGES_BULK_RET, COMPACTION_EVENTS
from buddyscope.model.ftrace import EVENTS

if TYPE_CHECKING:
    import drgn

__all__ = ("KMEM_EVENTS", "KPROBE_GROUP", "TRACEFS", "RingBufferCounters", "add_kprobes",
           "bulk_alloc_kprobes", "compaction_kprobes", "find_tracefs", "pcp_decay_kprobes",
           "reclaim_kprobes", "remove_kprobes", "restore_tracing", "ring_buffer_counters",
           "save_tracing", "start_tracing", "tracefs_of", "vmstat_refresh_kprobes",
           "watermark_kprobes")


@dataclasses.dataclass(frozen=True)
class RingBufferCounters:
    """``struct ring_buffer_per_cpu`` counters of one CPU (all ``local_t``)."""

    cpu: int
    #: Events written and not overwritten.
    entries: int
    #: Events overwritten before being read (the buffer was too small).
    overrun: int
    commit_overrun: int
    dropped_events: int
    #: Non-zero while an event is being written: the CPU is mid-commit.
    committing: int
    #: Events already consumed by a reader.
    read: int

    @property
    def lossless(self) -> bool:
        return not (self.overrun or self.commit_overrun or self.dropped_events)


def _local(obj: drgn.Object) -> int:
    # local_t wraps atomic_long_t.
    return obj.a.counter.value_()


def ring_buffer_counters(prog: drgn.Program) -> dict[int, RingBufferCounters]:
    """Counters of the top-level trace instance's ring buffer, per CPU.

    Reads ``global_trace.array_buffer.buffer->buffers[cpu]``.
    """
    from drgn.helpers.linux.cpumask import for_each_possible_cpu

    buffer = prog["global_trace"].array_buffer.buffer
    out = {}
    for cpu in for_each_possible_cpu(prog):
        cb = buffer.buffers[cpu]
        if not cb.value_():
            continue
        out[cpu] = RingBufferCounters(
            cpu=cpu,
            entries=_local(cb.entries),
            overrun=_local(cb.overrun),
            commit_overrun=_local(cb.commit_overrun),
            dropped_events=_local(cb.dropped_events),
            committing=_local(cb.committing),
            read=cb.read.value_(),
        )
    return out


# x86-64 System V: where a function's first six integer arguments arrive.
_X86_64_ARG_REGS = ("%di", "%si", "%dx", "%cx", "%r8", "%r9")


def _on_x86_64(prog: drgn.Program) -> bool:
    """Whether *prog* is an x86-64 kernel (the only calling convention the
    kprobe definitions below know)."""
    import drgn

    return prog.platform is not None and prog.platform.arch == drgn.Architecture.X86_64


def _arg_registers(prog: drgn.Program, functions: tuple[str, ...],
                   *params: str) -> Optional[tuple[str, list[str]]]:
    """The first of *functions* in the debug info, and the x86-64 registers
    that pass its *params* on entry: what a kprobe fetches them as. ``None``
    off x86-64, when none of *functions* is there (inlined, or another
    kernel), or when that function lacks a parameter or passes it on the
    stack."""
    if not _on_x86_64(prog):
        return None
    for name in functions:
        try:
            fn = prog.function(name)
        except (LookupError, ValueError):
            continue
        names = [p.name for p in fn.type_.parameters]
        try:
            return name, [_X86_64_ARG_REGS[names.index(p)] for p in params]
        except (ValueError, IndexError):
            return None
    return None


def bulk_alloc_kprobes(prog: drgn.Program) -> Optional[list[str]]:
    """``kprobe_events`` definitions of the two events that show each call of
    the bulk allocator (``alloc_pages_bulk``, with its gfp mask and
    ``nr_pages``) and what it returned (``alloc_pages_bulk_ret``, with
    ``nr_populated``), or ``None`` when the kernel has no bulk allocator or
    the architecture is not x86-64. The argument registers come from the
    function's own parameter list in the debug info.
    """
    # Since Linux kernel commit b951aaff5035 ("mm: enable page allocation
    # tagging") (in v6.10) the function is alloc_pages_bulk_noprof; from
    # commit 387ba26fb1cb ("mm/page_alloc: add a bulk page allocator") (in
    # v5.13) until then, __alloc_pages_bulk.
    found = _arg_registers(prog, ("alloc_pages_bulk_noprof", "__alloc_pages_bulk"),
                           "gfp", "nr_pages")
    if found is None:
        return None
    name, (gfp, nr_pages) = found
    return [f"p:buddyscope/{ALLOC_PAGES_BULK} {name} gfp={gfp}:x32 nr_pages={nr_pages}:s32",
            f"r:buddyscope/{ALLOC_PAGES_BULK_RET} {name} nr_populated=$retval:s32"]


def reclaim_kprobes(prog: drgn.Program) -> Optional[list[str]]:
    """``kprobe_events`` definitions of kswapd's reclaim window: entry to
    ``balance_pgdat`` (``balance_pgdat``, with ``highest_zoneidx``) and its
    return (``balance_pgdat_ret``). In between, ``set_reclaim_active`` has
    set ``ZONE_RECLAIM_ACTIVE`` on the node's zones up to ``highest_zoneidx``
    and the pcp free path drains at a lower mark (``nr_pcp_high``); no
    tracepoint shows it. ``None`` when the function is not in the debug info
    (inlined) or the architecture is not x86-64.
    """
    found = _arg_registers(prog, ("balance_pgdat",), "highest_zoneidx")
    if found is None:
        return None
    _, (reg,) = found
    return [f"p:buddyscope/balance_pgdat balance_pgdat highest_zoneidx={reg}:s32",
            "r:buddyscope/balance_pgdat_ret balance_pgdat"]


def pcp_decay_kprobes(prog: drgn.Program) -> Optional[list[str]]:
    """The ``kprobe_events`` definition of an event on ``decay_pcp_high``
    (6.7+), with the zone's ``zone_start_pfn``: vmstat's refresh on each
    CPU lowers that CPU's pcp->high about once a second, with no event
    unless it drains, and the pcp free path then drains at a lower count.
    ``None`` when the kernel has no such function (before 6.7) or the
    architecture is not x86-64.
    """
    found = _arg_registers(prog, ("decay_pcp_high",), "zone")
    if found is None:
        return None
    _, (reg,) = found
    off = prog.type("struct zone").member("zone_start_pfn").offset
    return [f"p:buddyscope/decay_pcp_high decay_pcp_high zone_start_pfn=+{off}({reg}):x64"]


def vmstat_refresh_kprobes(prog: drgn.Program) -> Optional[list[str]]:
    """The ``kprobe_events`` definition of an event on
    ``refresh_cpu_vm_stats``, with ``do_pagesets``: it folds the CPU's
    ``vm_stat_diff`` into the zone counters the watermark checks read
    (``zone_page_state``), from vmstat_update about once a second and from
    quiet_vmstat each time the CPU's tick stops in idle, with no event.
    ``None`` when the function is not in the debug info (inlined) or the
    architecture is not x86-64."""
    found = _arg_registers(prog, ("refresh_cpu_vm_stats",), "do_pagesets")
    if found is None:
        return None
    _, (reg,) = found
    return [f"p:buddyscope/refresh_cpu_vm_stats refresh_cpu_vm_stats do_pagesets={reg}:u8"]


def compaction_kprobes(prog: drgn.Program) -> Optional[list[str]]:
    """``kprobe_events`` definitions of ``__isolate_free_page`` (the page
    pointer and order) and its return (the pages taken, 0 when the
    watermark check refused): compaction's free scanner takes free blocks
    off the lists with it, and no tracepoint names the pages
    (``mm_compaction_isolate_freepages`` prints a range and a count). The
    snapshot's ``vmemmap`` and ``sizeof_page`` turn the pointer into a PFN.
    ``None`` when the function is not in the debug info or the architecture
    is not x86-64."""
    found = _arg_registers(prog, ("__isolate_free_page",), "page", "order")
    if found is None:
        return None
    _, (page, order) = found
    return [f"p:buddyscope/isolate_free_page __isolate_free_page page={page}:x64 order={order}:u32",
            "r:buddyscope/isolate_free_page_ret __isolate_free_page nr=$retval:s32"]


# zone members a watermark change rewrites: the watermarks, the lowmem
# reserves, and the pcp sizes zone_pcp_update derives from them (6.1
# pageset_high; 6.7+ pageset_high_min/max; pageset_batch).
_ZONE_SETUP_MEMBERS = ("pageset_high", "pageset_high_min", "pageset_high_max", "pageset_batch")


def watermark_kprobes(prog: drgn.Program) -> Optional[list[str]]:
    """The ``kprobe_events`` definition of an event at the return of
    ``setup_per_zone_wmarks``, fetching from node 0's ``struct pglist_data``
    (``node_data[0]``, ``@node_data``) each zone's ``_watermark[]``,
    ``lowmem_reserve[]`` and the pcp sizes ``zone_pcp_update`` set from them.
    Watermarks change with no event when ``min_free_kbytes`` does (enabling
    transparent huge pages raises it: ``set_recommended_min_free_kbytes``).
    Fields are ``z<zone>w<i>``, ``z<zone>r<i>`` and ``z<zone>_<member>``.
    ``None`` on a kernel without ``node_data`` or off x86-64."""
    import drgn

    if not _on_x86_64(prog):
        return None
    try:
        prog.function("setup_per_zone_wmarks")
        prog.object("node_data")
        pgdat = prog.type("struct pglist_data")
        zone_t = prog.type("struct zone")
    except (LookupError, ValueError):
        return None
    zones = pgdat.member("node_zones")
    base = zones.offset
    nr_zones = zones.type.length
    wm = zone_t.member("_watermark")
    reserve = zone_t.member("lowmem_reserve")
    try:
        node0 = prog["node_data"][0]
        populated = [z for z in range(nr_zones)
                     if node0.node_zones[z].managed_pages.counter.value_()]
    except (LookupError, drgn.FaultError):
        return None
    args = []
    for z in populated:  # kprobe_events lines are bounded: only zones with pages
        zoff = base + z * zone_t.size
        for i in range(wm.type.length):
            args.append(f"z{z}w{i}=+{zoff + wm.offset + 8 * i}(@node_data):u64")
        for i in range(reserve.type.length):
            args.append(f"z{z}r{i}=+{zoff + reserve.offset + 8 * i}(@node_data):s64")
        for name in _ZONE_SETUP_MEMBERS:
            try:
                m = zone_t.member(name)
            except LookupError:
                continue
            args.append(f"z{z}_{name}=+{zoff + m.offset}(@node_data):s{8 * m.type.size}")
    return ["r:buddyscope/setup_wmarks setup_per_zone_wmarks " + " ".join(args)]


# -- tracefs set-up and restore --------------------------------------------------

TRACEFS = "/sys/kernel/tracing"
# The kmem page events, as the one parser knows them.
KMEM_EVENTS = EVENTS
# What recording changes, so what is saved and put back. Every kmem event's
# enable is saved, not only the six: start_tracing turns the others off.
_STATE_FILES = ("tracing_on", "trace_clock", "buffer_size_kb", "current_tracer")
# The compaction free scanner's tracepoints recording enables too (where
# the kernel has them), so their enables are saved and put back.
_COMPACTION_ENABLES = tuple(f"events/compaction/{e}/enable" for e in COMPACTION_EVENTS)
# The kprobe events recording adds (and always deletes again).
KPROBE_GROUP = "buddyscope"


def tracefs_of(host) -> str:
    """Where *host* has its tracefs."""
    return getattr(host, "tracefs", TRACEFS)


def save_tracing(host) -> dict[str, str]:
    """The tracing state *host* has now, file by file."""
    files = " ".join(_STATE_FILES + _COMPACTION_ENABLES)
    script = (f"cd {tracefs_of(host)} && for f in {files} events/kmem/*/enable; do "
              f"printf '%s\\t' $f; head -c 200 $f 2>/dev/null | tr '\\n' ' '; echo; done")
    out = host.run(script, check=True).text
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


def restore_tracing(host, state: dict[str, str]) -> None:
    """Put back what :func:`save_tracing` found (tracing_on last)."""
    tracefs = tracefs_of(host)
    lines = [f"echo 0 > {tracefs}/tracing_on"]
    for name, value in state.items():
        if name == "tracing_on":
            continue
        if name == "trace_clock":
            value = _clock_name(value)
        lines.append(f"echo {value} > {tracefs}/{name}")
    lines.append(f"echo {state.get('tracing_on', '1')} > {tracefs}/tracing_on")
    host.run("\n".join(lines), check=True)


def start_tracing(host, buffer_kb: int, kprobes: Optional[list[str]] = None) -> list[str]:
    """Enable the kmem page events (and the bulk allocator's *kprobes*, when
    given and the kernel has kprobe events), clear the buffer, start."""
    tracefs = tracefs_of(host)
    have = host.run(f"ls {tracefs}/events/kmem/", check=True).text.split()
    events = [e for e in KMEM_EVENTS if e in have]
    script = [f"cd {tracefs}", "echo 0 > tracing_on", "echo nop > current_tracer",
              "echo counter > trace_clock", f"echo {buffer_kb} > buffer_size_kb"]
    script += [f"echo 0 > events/kmem/{e}/enable" for e in have if e not in events and e != "enable" and e != "filter"]
    script += [f"echo 1 > events/kmem/{e}/enable" for e in events]
    # Compaction's free scanner takes free pages with no kmem event; its
    # tracepoints give the ranges and counts (the kprobes, the pages).
    have = host.run(f"ls {tracefs}/events/compaction/ 2>/dev/null").text.split()
    compaction = [e for e in COMPACTION_EVENTS if e in have]
    script += [f"echo 1 > events/compaction/{e}/enable" for e in compaction]
    events += compaction
    host.run("\n".join(script), check=True)
    if kprobes and add_kprobes(host, kprobes):
        # Only those the kernel took: replay reads an event enabled and never
        # traced as a function never called (one that did not register, a
        # symbol this build inlined, is not enabled).
        have = set(host.run(f"ls {tracefs}/events/{KPROBE_GROUP}/ 2>/dev/null").text.split())
        events += [n for n in (d.split()[0].split("/")[1] for d in kprobes) if n in have]
    host.run(f"cd {tracefs} && echo > trace && echo 1 > tracing_on", check=True)
    return events


def add_kprobes(host, kprobes: list[str]) -> bool:
    """Define and enable *kprobes* (group ``buddyscope``); False when the
    kernel has no kprobe events."""
    tracefs = tracefs_of(host)
    if host.run(f"test -w {tracefs}/kprobe_events").status != 0:
        return False
    remove_kprobes(host)  # left over from a recorder that was killed
    lines = [f"cd {tracefs}"] + [f"echo '{d}' >> kprobe_events" for d in kprobes]
    lines.append(f"echo 1 > events/{KPROBE_GROUP}/enable")
    return host.run("\n".join(lines)).status == 0


def remove_kprobes(host) -> None:
    """Disable and delete every kprobe event of group ``buddyscope``."""
    tracefs = tracefs_of(host)
    host.run(f"cd {tracefs} && [ -d events/{KPROBE_GROUP} ] || exit 0; "
             f"echo 0 > events/{KPROBE_GROUP}/enable; "
             f"for e in events/{KPROBE_GROUP}/*/; do e=${{e%/}}; "
             f"echo \"-:{KPROBE_GROUP}/${{e##*/}}\" >> kprobe_events; done")


def find_tracefs() -> str:
    """Where this machine's tracefs is mounted."""
    for path in (TRACEFS, "/sys/kernel/debug/tracing"):
        if os.path.exists(f"{path}/events/kmem"):
            return path
    raise BuddyscopeError("no tracefs with kmem events here (mount it: "
                          "mount -t tracefs nodev /sys/kernel/tracing)")
