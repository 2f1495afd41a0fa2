"""
Tracing
-------

The ftrace ring buffer's own per-CPU counters, read with drgn. Read while the
kernel is paused they mark exactly where a snapshot falls in the event stream:
the first ``entries`` events of each CPU came before it.
"""

from __future__ import annotations

import dataclasses

import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu

__all__ = ("RingBufferCounters", "ring_buffer_counters")


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
