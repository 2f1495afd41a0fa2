"""
Kernel Log
----------

The last ``page allocation failure`` in the kernel's printk buffer, read
with drgn's :func:`drgn.helpers.linux.printk.get_printk_records`.

``warn_alloc()`` (``mm/page_alloc.c``, the same format in 5.10, 6.1, 6.12
and 7.2) prints::

    COMM: page allocation failure: order:3, mode:0x40dc0(GFP_KERNEL|__GFP_COMP|__GFP_ZERO), nodemask=(null),cpuset=/,mems_allowed=0

then ``dump_stack()``, whose first line (``lib/dump_stack.c``:
``dump_stack_print_info``) says ``CPU: 1 PID: 123 Comm: ...`` (``CPU: 1 UID:
0 PID: ...`` on newer kernels). The failure's order and gfp mask come from
the first record, the CPU from the ``CPU:`` line of the same caller after it
(or the record's own caller CPU, logged outside task context).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Optional, Sequence

import drgn

__all__ = ("AllocFailure", "find_alloc_failure", "last_alloc_failure")

_FAILURE = re.compile(
    rb"^(?P<comm>.*?): page allocation failure: order:(?P<order>\d+), "
    rb"mode:(?P<mask>0x[0-9a-fA-F]+)\((?P<names>[^)]*)\)")
_CPU = re.compile(rb"^CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) ")


@dataclasses.dataclass(frozen=True)
class AllocFailure:
    """One ``warn_alloc`` "page allocation failure" record."""

    order: int
    #: The ``gfp_t`` mask as printed (``mode:%#x``).
    gfp_mask: int
    #: The mask's names as the kernel printed them (``%pGg``).
    gfp_names: str
    comm: str
    #: None when neither the record nor a ``CPU:`` line says.
    cpu: Optional[int]
    #: Nanoseconds since boot.
    timestamp: int
    seq: int
    text: str


def find_alloc_failure(records: Sequence) -> Optional[AllocFailure]:
    """The last failure among *records* (``PrintkRecord``-like: ``text``,
    ``seq``, ``timestamp``, ``caller_tid``, ``caller_cpu``), or None."""
    for i in range(len(records) - 1, -1, -1):
        m = _FAILURE.match(records[i].text)
        if m is None:
            continue
        r = records[i]
        cpu = r.caller_cpu
        if cpu is None:
            cpu = _dump_stack_cpu(records[i + 1:], r.caller_tid)
        return AllocFailure(
            order=int(m["order"]), gfp_mask=int(m["mask"], 16),
            gfp_names=m["names"].decode(errors="replace"),
            comm=m["comm"].decode(errors="replace"), cpu=cpu, timestamp=r.timestamp,
            seq=r.seq, text=r.text.decode(errors="replace"))
    return None


def _dump_stack_cpu(after: Iterable, tid: Optional[int]) -> Optional[int]:
    # The first "CPU: N PID: P" line of the same task (records of other
    # CPUs may interleave); without a caller id, the first one at all.
    for n, r in enumerate(after):
        m = _CPU.match(r.text)
        if m and (tid is None or int(m["pid"]) == tid):
            return int(m["cpu"])
        if n > 200:
            break
    return None


def last_alloc_failure(prog: drgn.Program) -> Optional[AllocFailure]:
    """The last "page allocation failure" in *prog*'s printk buffer.

    :param prog: a kernel (live, vmcore or QEMU guest).
    """
    from drgn.helpers.linux.printk import get_printk_records

    return find_alloc_failure(get_printk_records(prog))
