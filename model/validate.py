"""
Validate
--------

A loaded snapshot checked against its schema (``docs/snapshot-format.md``)
before anything uses it: every field of the type it must have, every count
at least 0, every index in range, every PFN inside its zone and aligned to
its order. A file written by a broken tool, cut by a full disk or made to
hurt (``spanned_pages`` of 2^60, a list of strings, a CPU of -1) is refused
in one line naming the field, instead of failing later, deep in the model,
with an exception that is not a :class:`~buddyscope.errors.BuddyscopeError`.

Only the shape is checked, never how the kernel filled it: a PFN listed
twice (a probe anomaly, ``Capture.anomalies``) is the model's business.
"""

from __future__ import annotations

import array
from typing import Any

from buddyscope.errors import BuddyscopeError
from buddyscope.model.pfnarray import check_aligned

__all__ = ("check_snapshot", "MAX_PFN", "MAX_ORDERS", "MAX_CPUS")

#: x86-64 and arm64 physical addresses have at most 52 bits: with 4 KiB
#: pages no PFN reaches 2^40. Larger ones cannot be a kernel's.
MAX_PFN = 1 << 52
#: ``NR_PAGE_ORDERS`` is 11 (x86-64) up to 14 (arm64 64K pages, powerpc).
MAX_ORDERS = 64
#: ``NR_CPUS`` is at most 8192 in every Debian config.
MAX_CPUS = 1 << 16
#: ``enum migratetype`` has at most 7 members.
MAX_MIGRATETYPES = 64


#: array typecodes of unsigned ints (the PFN arrays of packed lists).
_UNSIGNED = frozenset("BHILQ")


class _Bad(Exception):
    pass


def _int(v: Any, where: str, lo: int = 0, hi: int = MAX_PFN) -> int:
    if type(v) is not int:
        raise _Bad(f"{where} is {type(v).__name__} {_short(v)}, not an integer")
    if not lo <= v <= hi:
        raise _Bad(f"{where} is {v}, not in {lo}..{hi}")
    return v


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _Bad(f"{where} is {type(v).__name__} {_short(v)}, not a string")
    return v


def _list(v: Any, where: str, n: int = -1) -> list:
    if not isinstance(v, list):
        raise _Bad(f"{where} is {type(v).__name__} {_short(v)}, not a list")
    if n >= 0 and len(v) != n:
        raise _Bad(f"{where} has {len(v)} entries, not {n}")
    return v


def _ints(v: Any, where: str, lo: int = 0, hi: int = MAX_PFN) -> None:
    for i, x in enumerate(_list(v, where)):
        _int(x, f"{where}[{i}]", lo, hi)


def _counters(v: Any, where: str) -> None:
    """A dict of name -> integer (``watermarks``, ``fields``): kernel
    counters that may be signed (``vm_stat`` drifts below 0 per CPU)."""
    if not isinstance(v, dict):
        raise _Bad(f"{where} is {type(v).__name__}, not an object")
    for k, x in v.items():
        _int(x, f"{where}[{k!r}]", -MAX_PFN, MAX_PFN)


def _pfns(v: Any, where: str, start: int, end: int, order: int) -> None:
    """A list (or an array) of PFNs of blocks of *order* inside [start, end)."""
    mask = (1 << order) - 1
    if isinstance(v, array.array) and v.typecode in _UNSIGNED:
        # Ints by construction; the alignment read from the words' bytes.
        if not v or (start <= min(v) and max(v) < end and check_aligned(v, order)):
            return
    # The whole list at C speed (10 M entries: 0.3 s, not 3 s); the loop
    # below only runs to name the first bad entry.
    elif not _list(v, where) or (set(map(type, v)) == {int} and start <= min(v) and max(v) < end
                                 and not (mask and any(map(mask.__and__, v)))):
        return
    for i, pfn in enumerate(v):
        if type(pfn) is not int or not start <= pfn < end:
            raise _Bad(f"{where}[{i}] is {_short(pfn)}, not a pfn of the zone "
                       f"({start:#x}..{end:#x})")
        if pfn & mask:
            raise _Bad(f"{where}[{i}] is {pfn:#x}, not aligned to order {order}")


def _check(snap) -> None:
    k = snap.kernel
    _str(k.release, "kernel.release")
    _int(k.page_size, "kernel.page_size", 1, 1 << 30)
    nr_orders = _int(k.nr_page_orders, "kernel.nr_page_orders", 1, MAX_ORDERS)
    # -1: not known (procfs without pagetypeinfo); the model needs PFNs and it.
    _int(k.pageblock_order, "kernel.pageblock_order", 0 if snap.has_pfns else -1, nr_orders - 1)
    for i, n in enumerate(_list(k.migratetypes, "kernel.migratetypes")):
        _str(n, f"kernel.migratetypes[{i}]")
    nr_mt = len(k.migratetypes)
    # None known: procfs without pagetypeinfo (counts only).
    if not (1 if snap.has_pfns else 0) <= nr_mt <= MAX_MIGRATETYPES:
        raise _Bad(f"kernel.migratetypes has {nr_mt} entries")
    nr_cpus = _int(k.nr_cpus, "kernel.nr_cpus", 1, MAX_CPUS)
    for i, pl in enumerate(_list(k.pcp_lists, "kernel.pcp_lists")):
        _int(pl.order, f"kernel.pcp_lists[{i}].order", 0, nr_orders - 1)
        _ints(pl.migratetypes, f"kernel.pcp_lists[{i}].migratetypes", 0, nr_mt - 1)
        if not pl.migratetypes:
            raise _Bad(f"kernel.pcp_lists[{i}].migratetypes is empty")
    if k.build_id is not None:
        _str(k.build_id, "kernel.build_id")
    for i, f in enumerate(_list(k.features, "kernel.features")):
        _str(f, f"kernel.features[{i}]")

    c = snap.capture
    for name in ("source", "target", "time", "tool"):
        _str(getattr(c, name), f"capture.{name}")
    if not isinstance(c.paused, bool):
        raise _Bad(f"capture.paused is {_short(c.paused)}, not true or false")
    if type(c.read_seconds) not in (int, float):
        raise _Bad(f"capture.read_seconds is {_short(c.read_seconds)}, not a number")
    for i, a in enumerate(_list(c.anomalies, "capture.anomalies")):
        for name in ("kind", "where", "detail"):
            _str(getattr(a, name), f"capture.anomalies[{i}].{name}")
    if not isinstance(c.notes, dict):
        raise _Bad("capture.notes is not an object")

    nr_lists = len(k.pcp_lists)
    for zi, z in enumerate(_list(snap.zones, "zones")):
        w = f"zones[{zi}]"
        _int(z.node, f"{w}.node", 0, MAX_CPUS)
        _str(z.name, f"{w}.name")
        start = _int(z.start_pfn, f"{w}.start_pfn")
        spanned = _int(z.spanned_pages, f"{w}.spanned_pages", 0, MAX_PFN - start)
        end = start + spanned
        for name in ("present_pages", "managed_pages", "watermark_boost",
                     "nr_reserved_highatomic"):
            _int(getattr(z, name), f"{w}.{name}", 0, spanned)
        # vm_stat[NR_FREE_PAGES] sums per-CPU deltas: it can read below 0.
        _int(z.nr_free_pages, f"{w}.nr_free_pages", -MAX_PFN, MAX_PFN)
        _counters(z.watermarks, f"{w}.watermarks")
        for name in ("min", "low", "high"):
            if name not in z.watermarks:
                raise _Bad(f"{w}.watermarks has no {name!r}")
        _ints(z.lowmem_reserve, f"{w}.lowmem_reserve", 0, MAX_PFN)
        _counters(z.fields, f"{w}.fields")
        for o, a in enumerate(_list(z.free_area, f"{w}.free_area", nr_orders)):
            wa = f"{w}.free_area[{o}]"
            _int(a.nr_free, f"{wa}.nr_free", 0, spanned >> o)
            if a.free_list is not None:
                for mt, pfns in enumerate(_list(a.free_list, f"{wa}.free_list", nr_mt)):
                    _pfns(pfns, f"{wa}.free_list[{mt}]", start, end, o)
            if a.counts is not None:
                _list(a.counts, f"{wa}.counts", nr_mt)
                _ints(a.counts, f"{wa}.counts", 0, spanned >> o)
        cpus = set()
        for i, p in enumerate(_list(z.pcp, f"{w}.pcp")):
            wp = f"{w}.pcp[{i}]"
            cpu = _int(p.cpu, f"{wp}.cpu", 0, nr_cpus - 1)
            if cpu in cpus:
                raise _Bad(f"{wp}.cpu is {cpu}, listed twice")
            cpus.add(cpu)
            _int(p.count, f"{wp}.count", 0, spanned)
            _int(p.high, f"{wp}.high", 0, MAX_PFN)
            _int(p.batch, f"{wp}.batch", 0, MAX_PFN)
            _counters(p.fields, f"{wp}.fields")
            if p.lists is not None:
                for pi, pfns in enumerate(_list(p.lists, f"{wp}.lists", nr_lists)):
                    _pfns(pfns, f"{wp}.lists[{pi}]", start, end, k.pcp_lists[pi].order)
        if z.pageblock_migratetypes is not None:
            nr_blocks = (spanned >> max(k.pageblock_order, 0)) + 2
            _list(z.pageblock_migratetypes, f"{w}.pageblock_migratetypes")
            if len(z.pageblock_migratetypes) > nr_blocks:
                raise _Bad(f"{w}.pageblock_migratetypes has {len(z.pageblock_migratetypes)} "
                           f"entries for {spanned} pages")
            # Up to the 3 bits of PB_migrate (4 with PB_migrate_isolate); -1
            # where the usage map could not be read.
            _ints(z.pageblock_migratetypes, f"{w}.pageblock_migratetypes", -1, 15)


def check_snapshot(snap, origin: str, error: type = BuddyscopeError) -> None:
    """Refuse *snap* (a :class:`~buddyscope.model.snapshot.Snapshot` just
    built from a file) with *error*, one line naming *origin* and the first
    field that is not what the schema says."""
    try:
        _check(snap)
    except _Bad as e:
        raise error(f"{origin} is a corrupt buddyscope snapshot ({e})") from None
