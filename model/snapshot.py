"""
Snapshot
--------

The state of the buddy allocator at one moment, as pure data: what the probe
reads and what the model starts from. The schema is documented field by field
in ``docs/snapshot-format.md``; :data:`FORMAT` is its version. Files are
gzip'd JSON; a file of a newer format is refused with a clear message, and
every older format stays readable.

A list of PFNs is a list of ints (format 1 files, the probe) or an
:class:`array.array` of unsigned words (format 2 files, where each list is
packed: :mod:`buddyscope.model.pfnarray`): either is a sequence of ints,
and :meth:`Snapshot.to_dict` gives lists for both.
"""

from __future__ import annotations

import array
import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

from buddyscope.errors import BuddyscopeError
from buddyscope.model._jsonfile import read_json, write_json
from buddyscope.model.pfnarray import MAX_ENTRIES, PfnPackError, pack, unpack
from buddyscope.model.validate import check_snapshot

__all__ = (
    "FORMAT",
    "Anomaly",
    "Capture",
    "FreeArea",
    "KernelInfo",
    "PcpList",
    "Pcp",
    "Snapshot",
    "TORN_KINDS",
    "SnapshotError",
    "Zone",
)

#: 2: PFN lists may be packed arrays (``{"count", "word", "data"}``); 1:
#: lists of ints only. Both are read; files are written in 2.
FORMAT = 2


class SnapshotError(BuddyscopeError):
    """A snapshot file that cannot be read: corrupt, foreign, or too new."""


@dataclasses.dataclass
class PcpList:
    """What one pcp list (``per_cpu_pages.lists[pindex]``) holds: pages of
    *order* and of any of *migratetypes* (``order_to_pindex``)."""

    order: int
    migratetypes: list[int]


@dataclasses.dataclass
class KernelInfo:
    """What the kernel is, in its own terms."""

    release: str
    page_size: int
    #: ``NR_PAGE_ORDERS``: orders 0 .. nr_page_orders - 1 (``MAX_ORDER`` up to
    #: 6.3, where it was exclusive; ``MAX_PAGE_ORDER`` + 1 from 6.8).
    nr_page_orders: int
    pageblock_order: int
    #: ``migratetype_names[]`` in the kernel's ``enum migratetype`` order.
    migratetypes: list[str]
    #: pcp list index (``pindex``) -> what the list holds.
    pcp_lists: list[PcpList]
    #: CPUs the snapshot has pcp state for (possible CPUs).
    nr_cpus: int
    build_id: Optional[str] = None
    #: Type facts of the kernel, in its own words, that tell kernels apart where
    #: the release string must not: ``PB_migrate_isolate``,
    #: ``zone.trylock_free_pages``, ``enum rmqueue_mode``, ... (see
    #: ``buddyscope.probe.layout.detect_features``). Empty when unknown (procfs,
    #: files written before the field existed).
    features: list[str] = dataclasses.field(default_factory=list)
    #: Address of the ``struct page`` of PFN 0 (``vmemmap``, randomised by
    #: KASLR) and ``sizeof(struct page)``: a page's ``struct page`` is at
    #: ``vmemmap + pfn * sizeof_page``. None when unknown (procfs, files
    #: written before the fields existed).
    vmemmap: Optional[int] = None
    sizeof_page: Optional[int] = None
    #: What is on in the kernel that makes exact prediction impossible
    #: (``page_alloc.shuffle``, ``page_reporting``, ``debug_guardpage``; see
    #: ``buddyscope.model.unpredictable``). Empty when none is, and when
    #: unknown (procfs, files written before the field existed).
    unpredictable: list[str] = dataclasses.field(default_factory=list)

    @property
    def max_page_order(self) -> int:
        return self.nr_page_orders - 1

    def migratetype(self, name: str) -> int:
        """Index of the migratetype called *name* (case-insensitive, with or
        without ``MIGRATE_``)."""
        want = name.upper().removeprefix("MIGRATE_")
        for i, n in enumerate(self.migratetypes):
            if n.upper() == want:
                return i
        raise BuddyscopeError(
            f"unknown migratetype {name!r}: this kernel has {', '.join(self.migratetypes)}"
        )


@dataclasses.dataclass
class FreeArea:
    """``zone->free_area[order]``."""

    nr_free: int
    #: PFNs of each ``free_list[migratetype]``, head first (a list or an
    #: array of ints); None when the source has no PFNs (procfs).
    free_list: Optional[list[Sequence[int]]] = None
    #: Blocks per migratetype when known without the lists (``/proc/pagetypeinfo``).
    counts: Optional[list[int]] = None

    def count(self, migratetype: int) -> Optional[int]:
        """Free blocks of *migratetype* at this order, if known."""
        if self.free_list is not None:
            return len(self.free_list[migratetype])
        if self.counts is not None:
            return self.counts[migratetype]
        return None


@dataclasses.dataclass
class Pcp:
    """``struct per_cpu_pages`` of one CPU for one zone."""

    cpu: int
    count: int
    high: int
    batch: int
    #: The kernel's other members where it has them: ``free_factor`` (6.1),
    #: ``high_min``, ``high_max``, ``flags``, ``alloc_factor``,
    #: ``free_count`` (6.12+), ``expire``.
    fields: dict[str, int] = dataclasses.field(default_factory=dict)
    #: PFNs of each ``lists[pindex]``, head first (a list or an array of
    #: ints); None without PFNs.
    lists: Optional[list[Sequence[int]]] = None


@dataclasses.dataclass
class Zone:
    """One populated ``struct zone``."""

    node: int
    name: str
    start_pfn: int
    spanned_pages: int
    present_pages: int
    managed_pages: int
    #: ``_watermark[]`` by name: min, low, high, and promo where the kernel has it.
    watermarks: dict[str, int]
    watermark_boost: int
    lowmem_reserve: list[int]
    nr_reserved_highatomic: int
    #: ``vm_stat[NR_FREE_PAGES]``.
    nr_free_pages: int
    free_area: list[FreeArea]
    pcp: list[Pcp]
    #: Migratetype of each pageblock, from the one holding ``start_pfn``.
    pageblock_migratetypes: Optional[list[int]] = None
    #: Other counters where the kernel has them (``nr_free_highatomic``, ``cma_pages``).
    fields: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned_pages

    def pages_on_free_lists(self) -> int:
        """Pages the free lists hold: sum of ``nr_free << order``."""
        return sum(a.nr_free << o for o, a in enumerate(self.free_area))

    def pcp_pages(self) -> int:
        return sum(p.count for p in self.pcp)


@dataclasses.dataclass
class Anomaly:
    """Something met while reading that the reader could not take at face value."""

    #: ``cycle``, ``bound``, ``unreadable``, ``count_mismatch``, ``bad_link``,
    #: ``not_buddy``, ``misaligned``, ``locked`` or ``procfs``.
    kind: str
    #: Which list or field, e.g. ``DMA32 free_area[3].free_list[Movable]``.
    where: str
    detail: str


#: The :class:`Anomaly` kinds a walk meets when a list changes under it on a
#: running kernel: an entry unlinked mid-walk (LIST_POISON in a link, or a
#: link reused by the page's new owner), a walk cut short against its count,
#: an entry that left its list's order. A paused kernel shows none of them
#: for a good list; a live read with one of them is torn.
TORN_KINDS = frozenset({"bad_link", "count_mismatch", "misaligned", "not_buddy", "cycle", "bound"})


@dataclasses.dataclass
class Capture:
    """How the snapshot was taken."""

    #: ``live``, ``vmcore``, ``qmp``, ``procfs``.
    source: str
    #: What was read: ``/proc/kcore``, a vmcore path, a QMP socket, ``/proc``.
    target: str
    #: UTC, ISO 8601.
    time: str
    #: The kernel did not run while it was read (paused guest, vmcore).
    paused: bool
    read_seconds: float
    tool: str
    anomalies: list[Anomaly] = dataclasses.field(default_factory=list)
    #: Extra facts about the source (host memory from psutil for procfs).
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        """Paused and read without anomalies."""
        return self.paused and not self.anomalies


#: Fields holding a list of PFN lists (or None): copied list by list.
_PFN_LISTS = frozenset({"free_list", "lists"})


def _as_list(pfns: Sequence[int]) -> list[int]:
    return pfns.tolist() if isinstance(pfns, array.array) else list(pfns)


def _plain(obj: Any, pfn_lists: frozenset, each: Callable[[Sequence[int]], Any] = _as_list) -> Any:
    """``dataclasses.asdict(obj)``, copying the fields named in *pfn_lists*
    (lists of lists of ints, or arrays) without visiting their elements:
    *each* of their lists becomes what *each* makes of it (a list)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name in pfn_lists:
            out[f.name] = None if v is None else [each(l) for l in v]
        elif dataclasses.is_dataclass(v):
            out[f.name] = _plain(v, pfn_lists, each)
        elif isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
            out[f.name] = [_plain(x, pfn_lists, each) for x in v]
        elif isinstance(v, list) and all(type(x) is int for x in v):
            out[f.name] = list(v)
        else:
            out[f.name] = copy.deepcopy(v)
    return out


@dataclasses.dataclass
class Snapshot:
    """The whole allocator state: the kernel, how it was captured, its zones."""

    kernel: KernelInfo
    capture: Capture
    zones: list[Zone]
    format: int = FORMAT

    @property
    def has_pfns(self) -> bool:
        return all(a.free_list is not None for z in self.zones for a in z.free_area)

    def zone(self, name: str, node: int = 0) -> Zone:
        for z in self.zones:
            if z.name == name and z.node == node:
                return z
        raise BuddyscopeError(
            f"no zone {name!r} on node {node}: the snapshot has "
            f"{', '.join(f'{z.node}/{z.name}' for z in self.zones)}"
        )

    # -- serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data, as ``dataclasses.asdict`` gives it, ``format`` first.

        The PFN lists are copied as lists in one step each: ``asdict``
        visits every element, about 2 µs per free-list entry."""
        return {"format": self.format, "kernel": dataclasses.asdict(self.kernel),
                "capture": dataclasses.asdict(self.capture),
                "zones": [_plain(z, _PFN_LISTS) for z in self.zones]}

    def to_file_dict(self) -> dict[str, Any]:
        """What a file holds (format :data:`FORMAT`): :meth:`to_dict` with
        every PFN list packed (:func:`buddyscope.model.pfnarray.pack`)."""
        return {"format": FORMAT, "kernel": dataclasses.asdict(self.kernel),
                "capture": dataclasses.asdict(self.capture),
                "zones": [_plain(z, _PFN_LISTS, pack) for z in self.zones]}

    def iter_json(self) -> Iterator[str]:
        """``json.dumps(self.to_dict())`` in pieces, the same text: the PFN
        lists go out a chunk at a time, never whole as Python lists (at 10 M
        entries that is most of the time and memory ``to_dict`` costs)."""
        yield f'{{"format": {json.dumps(self.format)}, "kernel": '
        yield json.dumps(dataclasses.asdict(self.kernel))
        yield ', "capture": '
        yield json.dumps(dataclasses.asdict(self.capture))
        yield ', "zones": ['
        for i, z in enumerate(self.zones):
            if i:
                yield ", "
            yield from _iter_json(z)
        yield "]}"

    def write_json(self, out: TextIO) -> None:
        """Write :meth:`iter_json` to *out*."""
        write = out.write
        for piece in self.iter_json():
            write(piece)

    @classmethod
    def from_dict(cls, d: Any, origin: str = "snapshot") -> "Snapshot":
        """The snapshot a file's JSON *d* holds (:meth:`to_file_dict` or
        :meth:`to_dict`, of any format up to :data:`FORMAT`), checked
        against the schema; *origin* names it in messages."""
        if not isinstance(d, dict) or "format" not in d or "zones" not in d:
            raise SnapshotError(f"{origin} is not a buddyscope snapshot")
        fmt = d["format"]
        if not isinstance(fmt, int) or fmt < 1:
            raise SnapshotError(f"{origin}: bad snapshot format {fmt!r}")
        if fmt > FORMAT:
            raise SnapshotError(
                f"{origin} has snapshot format {fmt}; this buddyscope reads formats up to "
                f"{FORMAT}: upgrade buddyscope"
            )
        try:
            k = dict(d["kernel"])
            k["pcp_lists"] = [PcpList(**p) for p in k["pcp_lists"]]
            c = dict(d["capture"])
            c["anomalies"] = [Anomaly(**a) for a in c.get("anomalies", [])]
            zones = []
            # Packed lists (format 2) unpack to arrays, at most MAX_ENTRIES PFNs a file.
            unpacked = _Unpacker(origin) if fmt >= 2 else None
            for zi, z in enumerate(d["zones"]):
                z = dict(z)
                z["free_area"] = [FreeArea(**a) for a in z["free_area"]]
                z["pcp"] = [Pcp(**p) for p in z["pcp"]]
                if unpacked is not None:
                    for o, a in enumerate(z["free_area"]):
                        a.free_list = unpacked(a.free_list, f"zones[{zi}].free_area[{o}].free_list")
                    for i, p in enumerate(z["pcp"]):
                        p.lists = unpacked(p.lists, f"zones[{zi}].pcp[{i}].lists")
                zones.append(Zone(**z))
            snap = cls(KernelInfo(**k), Capture(**c), zones, fmt)
        except (KeyError, TypeError, ValueError) as e:
            raise SnapshotError(f"{origin} is a corrupt buddyscope snapshot ({type(e).__name__}: {e})") from None
        check_snapshot(snap, origin, SnapshotError)
        return snap

    def save(self, path: Path) -> None:
        """Write gzip'd JSON (or plain JSON if *path* ends in ``.json``) of
        format :data:`FORMAT`, every PFN list packed."""
        write_json(path, self.to_file_dict())

    @classmethod
    def load(cls, path: Path) -> "Snapshot":
        """Read a snapshot file written by :meth:`save` (gzip'd or plain JSON)."""
        d = read_json(path, SnapshotError, "buddyscope snapshot")
        # A fixture wraps a snapshot; accept it as a source too.
        if isinstance(d, dict) and "snapshot" in d and "format" not in d:
            d = d["snapshot"]
        return cls.from_dict(d, str(path))


def _iter_list(items: Any, each: Callable[[Any], Iterator[str]]) -> Iterator[str]:
    """A JSON list of *items*, each written by *each*."""
    yield "["
    for j, x in enumerate(items):
        if j:
            yield ", "
        yield from each(x)
    yield "]"


def _iter_json(obj: Any) -> Iterator[str]:
    """``json.dumps(_plain(obj, _PFN_LISTS))`` in pieces (a zone and what it
    holds): the same keys in the same order, PFN lists by chunks."""
    yield "{"
    for i, f in enumerate(dataclasses.fields(obj)):
        yield f'{", " if i else ""}"{f.name}": '
        v = getattr(obj, f.name)
        if f.name in _PFN_LISTS and v is not None:
            yield from _iter_list(v, _iter_ints)
        elif dataclasses.is_dataclass(v):
            yield from _iter_json(v)
        elif isinstance(v, list) and v and dataclasses.is_dataclass(v[0]):
            yield from _iter_list(v, _iter_json)
        else:
            yield json.dumps(v)
    yield "}"


#: PFNs encoded to JSON at a time: 64 Ki of them are about half a MB of text.
_CHUNK = 1 << 16


def _iter_ints(pfns: Sequence[int]) -> Iterator[str]:
    """``json.dumps(list(pfns))`` in pieces, a chunk at a time. An array's
    list holds nothing but ints, whose list's ``repr`` is that JSON text,
    made a third faster than ``json.dumps`` makes it."""
    dumps = repr if isinstance(pfns, array.array) else json.dumps
    n = len(pfns)
    if n <= _CHUNK:
        yield dumps(_as_list(pfns))
        return
    yield "["
    for i in range(0, n, _CHUNK):
        text = dumps(_as_list(pfns[i:i + _CHUNK]))
        yield (", " if i else "") + text[1:-1]
    yield "]"


class _Unpacker:
    """Unpacks the packed lists of one file, within one budget of
    :data:`~buddyscope.model.pfnarray.MAX_ENTRIES` PFNs."""

    def __init__(self, origin: str):
        self.origin = origin
        self.left = MAX_ENTRIES

    def __call__(self, lists: Any, where: str) -> Any:
        """*lists* (a list of PFN lists, or anything else: the schema check
        names that) with each packed one (a JSON object) unpacked."""
        if not isinstance(lists, list):
            return lists
        out = []
        for i, v in enumerate(lists):
            if isinstance(v, dict):
                try:
                    v = unpack(v, self.left)
                except PfnPackError as e:
                    raise SnapshotError(
                        f"{self.origin} is a corrupt buddyscope snapshot ({where}[{i}]: {e})") from None
                self.left -= len(v)
            out.append(v)
        return out
