"""
procfs
------

The allocator's counts as procfs prints them: a :class:`~buddyscope.model.snapshot.Snapshot`
without PFNs, read from ``/proc/buddyinfo``, ``/proc/pagetypeinfo`` and
``/proc/zoneinfo``. No debug info, no ``/proc/kcore``; ``/proc/pagetypeinfo``
(mode 0400) needs root, and without it the snapshot has no per-migratetype
counts.

What each field comes from, and what procfs cannot give, is in
``docs/procfs-source.md``. In short:

- ``free_area[order].nr_free``: ``/proc/buddyinfo``, whose column count is
  ``NR_PAGE_ORDERS``;
- ``free_area[order].counts`` (one per migratetype), ``pageblock_order`` and the
  ``migratetype_names[]`` in ``enum migratetype`` order: ``/proc/pagetypeinfo``;
  its "Number of blocks type" table goes into ``Zone.fields`` as
  ``pageblocks_<Migratetype>`` (e.g. ``pageblocks_Movable``);
- everything else about a zone (span, watermarks, ``lowmem_reserve``, per-CPU
  ``count``/``high``/``batch``): ``/proc/zoneinfo``.

The three files are separate reads of a running kernel: counts that disagree
between buddyinfo and pagetypeinfo are recorded as ``count_mismatch``
anomalies, not raised. A file that is missing or not in the expected format
raises :class:`~buddyscope.errors.BuddyscopeError` naming the file and line.

Kernel differences are detected from what the files print, never from the
release string: ``boost`` (printed by 6.1, 6.12 and 7.2 in the lab, not by
5.10), ``promo`` (6.12, 7.2), ``high_min``/``high_max`` per CPU (7.2, and the
6.18 host), ``reserved_highatomic``/``free_highatomic`` (7.2), and the
``CMA`` migratetype (7.2's configuration).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import psutil

import buddyscope
from buddyscope.errors import BuddyscopeError
from buddyscope.model.snapshot import (
    Anomaly,
    Capture,
    FreeArea,
    KernelInfo,
    Pcp,
    Snapshot,
    Zone,
)

__all__ = ("DEFAULT_PAGE_SIZE", "PROCFS_PATH", "read_procfs")

#: The real procfs; :func:`read_procfs` reads another folder laid out the same
#: way when given one (psutil's ``PROCFS_PATH``).
PROCFS_PATH = Path("/proc")

#: Page size assumed for a folder that is not the running kernel's ``/proc``
#: (procfs does not print it): the x86-64 page, the only one the lab boots.
DEFAULT_PAGE_SIZE = 4096

# Printed by pagetypeinfo_showfree_print() instead of a count when a free list
# holds 100000 blocks or more: it stops counting under zone->lock there.
_CAPPED = ">"


def read_procfs(root: Path = PROCFS_PATH) -> Snapshot:
    """
    Read a counts-only snapshot of the buddy allocator from procfs.

    >>> snap = read_procfs(Path("fixtures/procfs/6.1"))
    >>> snap.zone("DMA32").free_area[10].nr_free
    100
    >>> snap.kernel.migratetypes[snap.kernel.migratetype("Movable")]
    'Movable'

    :param root: the procfs to read: ``/proc``, or a folder holding copies of
        ``sys/kernel/osrelease``, ``buddyinfo``, ``pagetypeinfo`` (optional)
        and ``zoneinfo``. Page size and host memory are only known for the
        real ``/proc``: elsewhere the page size is :data:`DEFAULT_PAGE_SIZE`
        and ``capture.notes`` has no ``host_memory``.
    :return: a :class:`Snapshot` with ``free_list``, ``Pcp.lists``,
        ``pcp_lists`` and ``pageblock_migratetypes`` left empty (procfs has no
        PFNs).
    :raises BuddyscopeError: a file is missing, unreadable (other than
        pagetypeinfo) or not in the expected format.
    """
    root = Path(root)
    live = os.path.realpath(root) == os.path.realpath(PROCFS_PATH)
    anomalies: list[Anomaly] = []

    t0 = time.monotonic()
    when = datetime.now(timezone.utc)
    osrelease = _read(root / "sys/kernel/osrelease")
    # buddyinfo and pagetypeinfo right after each other: their counts are
    # compared below, and the kernel runs between the two reads.
    buddyinfo = _read(root / "buddyinfo")
    pagetypeinfo_path = root / "pagetypeinfo"
    try:
        pagetypeinfo: Optional[str] = _read(pagetypeinfo_path, wrap=False)
    except PermissionError:
        pagetypeinfo = None
        anomalies.append(Anomaly("procfs", str(pagetypeinfo_path),
                                 "needs root: no per-migratetype counts"))
    except FileNotFoundError:
        pagetypeinfo = None
        anomalies.append(Anomaly("procfs", str(pagetypeinfo_path),
                                 "absent: no per-migratetype counts"))
    zoneinfo = _read(root / "zoneinfo")
    read_seconds = time.monotonic() - t0

    release = osrelease.strip()
    if not release or "\n" in release:
        raise BuddyscopeError(f"{root / 'sys/kernel/osrelease'}: not a kernel release: {osrelease[:80]!r}")

    buddy = _parse_buddyinfo(buddyinfo, root / "buddyinfo")
    nr_page_orders = len(next(iter(buddy.values())))
    pti = (_parse_pagetypeinfo(pagetypeinfo, pagetypeinfo_path, nr_page_orders)
           if pagetypeinfo is not None else None)
    zinfo = _parse_zoneinfo(zoneinfo, root / "zoneinfo")

    zones: list[Zone] = []
    cpus: set[int] = set()
    for (nid, name), nr_free in buddy.items():
        where = f"Node {nid} {name}"
        zi = zinfo.get((nid, name))
        if zi is None:
            raise BuddyscopeError(
                f"{root / 'zoneinfo'}: no zone {name} on node {nid}, which {root / 'buddyinfo'} lists"
            )
        counts: list[Optional[list[int]]] = [None] * nr_page_orders
        fields = dict(zi.fields)
        if pti is not None:
            free = pti.free.get((nid, name))
            if free is None:
                anomalies.append(Anomaly("procfs", where,
                                         f"{pagetypeinfo_path} has no free counts for this zone"))
            else:
                for order in range(nr_page_orders):
                    col = [free[mt][order] for mt in pti.migratetypes]
                    known = [c for c in col if c is not None]
                    if len(known) == len(col):
                        counts[order] = known
                    else:
                        capped = [mt for mt, c in zip(pti.migratetypes, col) if c is None]
                        anomalies.append(Anomaly(
                            "procfs", f"{where} free_area[{order}]",
                            f"pagetypeinfo stops counting at 100000: {', '.join(capped)} "
                            f"printed as >100000, no per-migratetype counts at this order"))
            for mt, n in pti.pageblocks.get((nid, name), {}).items():
                fields[f"pageblocks_{mt}"] = n
        for order, c in enumerate(counts):
            if c is not None and sum(c) != nr_free[order]:
                anomalies.append(Anomaly(
                    "count_mismatch", f"{where} free_area[{order}]",
                    f"buddyinfo nr_free {nr_free[order]}, pagetypeinfo sums to {sum(c)} "
                    f"(separate reads of a running kernel)"))
        for w in ("min", "low", "high"):
            zi.require(w)
        cpus.update(p.cpu for p in zi.pcp)
        zones.append(Zone(
            node=nid,
            name=name,
            start_pfn=zi.require("start_pfn"),
            spanned_pages=zi.require("spanned"),
            present_pages=zi.require("present"),
            managed_pages=zi.require("managed"),
            watermarks={w: zi.values[w] for w in ("min", "low", "high", "promo") if w in zi.values},
            # Not every kernel prints "boost" (5.10 does not) or
            # "reserved_highatomic" (only 7.2 of the lab's kernels does):
            # 0 where absent, as docs/procfs-source.md says.
            watermark_boost=zi.values.get("boost", 0),
            lowmem_reserve=zi.require_protection(),
            nr_reserved_highatomic=zi.values.get("reserved_highatomic", 0),
            nr_free_pages=zi.require("pages free"),
            free_area=[FreeArea(nr_free=n, counts=c) for n, c in zip(nr_free, counts)],
            pcp=zi.pcp,
            fields=fields,
        ))

    kernel = KernelInfo(
        release=release,
        page_size=os.sysconf("SC_PAGE_SIZE") if live else DEFAULT_PAGE_SIZE,
        nr_page_orders=nr_page_orders,
        # -1: unknown without pagetypeinfo (it is a build-time constant that
        # procfs prints nowhere else).
        pageblock_order=pti.pageblock_order if pti is not None else -1,
        migratetypes=list(pti.migratetypes) if pti is not None else [],
        pcp_lists=[],
        nr_cpus=len(cpus),
    )
    capture = Capture(
        source="procfs",
        target=str(root),
        time=when.isoformat(timespec="milliseconds"),
        paused=False,
        read_seconds=round(read_seconds, 6),
        tool=f"buddyscope {buddyscope.__version__}",
        anomalies=anomalies,
        notes={"host_memory": psutil.virtual_memory()._asdict()} if live else {},
    )
    return Snapshot(kernel, capture, zones)


# -- reading ---------------------------------------------------------------------

# Whole file as text; OS errors become one line naming the file, unless *wrap*
# is False (pagetypeinfo: its caller decides what a PermissionError means).
def _read(path: Path, wrap: bool = True) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        if not wrap and isinstance(e, (PermissionError, FileNotFoundError)):
            raise
        raise BuddyscopeError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as e:
        raise BuddyscopeError(f"{path}: not procfs text (byte {e.start} is not ASCII)") from None


def _unexpected(path: Path, lineno: int, line: str, why: str = "unexpected line") -> BuddyscopeError:
    return BuddyscopeError(f"{path}: {why} {lineno}: {line.strip()[:100]!r}")


# -- /proc/buddyinfo -------------------------------------------------------------
# frag_show_print(): "Node %d, zone %8s " then "%6lu " per order.

_BUDDYINFO_RE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)((?:\s+\d+)+)\s*")


# (node, zone name) -> nr_free per order, in the file's order.
def _parse_buddyinfo(text: str, path: Path) -> dict[tuple[int, str], list[int]]:
    zones: dict[tuple[int, str], list[int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _BUDDYINFO_RE.fullmatch(line)
        if not m:
            raise _unexpected(path, lineno, line)
        nr_free = [int(n) for n in m.group(3).split()]
        if zones and len(nr_free) != len(next(iter(zones.values()))):
            raise _unexpected(path, lineno, line, f"{len(nr_free)} orders, not "
                              f"{len(next(iter(zones.values())))}, on line")
        zones[(int(m.group(1)), m.group(2))] = nr_free
    if not zones:
        raise BuddyscopeError(f"{path}: no zones")
    return zones


# -- /proc/pagetypeinfo ----------------------------------------------------------
# pagetypeinfo_show(), once per node with memory:
#
#   Page block order: 9
#   Pages per block:  512
#
#   Free pages count per migrate type at order       0      1 ...
#   Node    0, zone      DMA, type    Unmovable      0      0 ...
#
#   Number of blocks type     Unmovable      Movable ...
#   Node 0, zone      DMA            1            7 ...
#
# and with page_owner, a "Number of mixed blocks" table shaped like the
# second one (not kept).

@dataclasses.dataclass
class _PageTypeInfo:
    pageblock_order: int
    migratetypes: list[str]
    # (node, zone) -> migratetype -> count per order (None: printed as >100000).
    free: dict[tuple[int, str], dict[str, list[Optional[int]]]]
    # (node, zone) -> migratetype -> pageblocks.
    pageblocks: dict[tuple[int, str], dict[str, int]]


_PTI_ORDER_RE = re.compile(r"Page block order:\s*(\d+)\s*")
_PTI_PAGES_RE = re.compile(r"Pages per block:\s*(\d+)\s*")
_PTI_FREE_HEAD_RE = re.compile(r"Free pages count per migrate type at order((?:\s+\d+)+)\s*")
_PTI_FREE_RE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)((?:\s+>?\d+)+)\s*")
_PTI_BLOCKS_HEAD_RE = re.compile(r"Number of (blocks type|mixed blocks)((?:\s+\S+)+)\s*")
_PTI_BLOCKS_RE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)((?:\s+\d+)+)\s*")


def _parse_pagetypeinfo(text: str, path: Path, nr_page_orders: int) -> _PageTypeInfo:
    pageblock_order: Optional[int] = None
    free: dict[tuple[int, str], dict[str, list[Optional[int]]]] = {}
    pageblocks: dict[tuple[int, str], dict[str, int]] = {}
    table: Optional[str] = None  # "free", "blocks" or "mixed"
    columns: list[str] = []  # migratetype names heading the current blocks table
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if m := _PTI_ORDER_RE.fullmatch(line):
            if pageblock_order is not None and int(m.group(1)) != pageblock_order:
                raise _unexpected(path, lineno, line, "a second pageblock order on line")
            pageblock_order = int(m.group(1))
        elif m := _PTI_PAGES_RE.fullmatch(line):
            if pageblock_order is None or int(m.group(1)) != 1 << pageblock_order:
                raise _unexpected(path, lineno, line, "pages per block do not match the order on line")
        elif m := _PTI_FREE_HEAD_RE.fullmatch(line):
            if [int(o) for o in m.group(1).split()] != list(range(nr_page_orders)):
                raise _unexpected(path, lineno, line, f"orders other than buddyinfo's "
                                  f"0..{nr_page_orders - 1} on line")
            table = "free"
        elif m := _PTI_BLOCKS_HEAD_RE.fullmatch(line):
            table = "blocks" if m.group(1) == "blocks type" else "mixed"
            columns = m.group(2).split()
        elif table == "free" and (m := _PTI_FREE_RE.fullmatch(line)):
            values = m.group(4).split()
            if len(values) != nr_page_orders:
                raise _unexpected(path, lineno, line, f"not {nr_page_orders} orders on line")
            per_mt = free.setdefault((int(m.group(1)), m.group(2)), {})
            if m.group(3) in per_mt:
                raise _unexpected(path, lineno, line, "a migratetype seen twice on line")
            per_mt[m.group(3)] = [None if v.startswith(_CAPPED) else int(v) for v in values]
        elif table in ("blocks", "mixed") and (m := _PTI_BLOCKS_RE.fullmatch(line)):
            values = m.group(3).split()
            if len(values) != len(columns):
                raise _unexpected(path, lineno, line, f"not {len(columns)} migratetypes on line")
            if table == "blocks":
                pageblocks[(int(m.group(1)), m.group(2))] = dict(zip(columns, map(int, values)))
        else:
            raise _unexpected(path, lineno, line)
    if pageblock_order is None or not free:
        raise BuddyscopeError(f"{path}: no 'Page block order' line or no free counts table")
    # Every zone lists every migratetype, in enum migratetype order.
    migratetypes = list(next(iter(free.values())))
    for (nid, name), listed in [*((z, list(d)) for z, d in free.items()),
                                *((z, list(d)) for z, d in pageblocks.items())]:
        if listed != migratetypes:
            raise BuddyscopeError(f"{path}: Node {nid} {name} lists migratetypes "
                                  f"{', '.join(listed)}, not {', '.join(migratetypes)}")
    return _PageTypeInfo(pageblock_order, migratetypes, free, pageblocks)


# -- /proc/zoneinfo --------------------------------------------------------------
# zoneinfo_show_print(), per zone (indentation is the kernel's):
#
#   Node 0, zone    DMA32
#     per-node stats                      <- first populated zone of a node only
#         nr_inactive_anon 104            <- node_stat_name(i), value
#     pages free     108945
#           boost    0                    <- not on 5.10
#           min      657
#           low      821
#           high     985
#           promo    1148                 <- 6.12+
#           spanned  126944
#           present  126944
#           managed  114050
#           cma      0                    <- not on 5.10
#           protection: (0, 0, 0, 0, 0)
#         nr_free_pages 108945            <- zone vm stats; unpopulated zones stop
#     pagesets                               after "protection"
#       cpu: 0                            <- online CPUs
#                 count: 145
#                 high:  186
#                 batch: 31
#                 high_min: 410           <- 7.2, the 6.18 host
#                 high_max: 6965
#     vm stats threshold: 12
#     node_unreclaimable:  0
#     start_pfn:           4096
#     reserved_highatomic: 0              <- 7.2
#     free_highatomic:     0              <- 7.2

_ZI_ZONE_RE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)\s*")
_ZI_VALUE_RE = re.compile(r"(\s*)([A-Za-z_][A-Za-z_ ]*?):?\s+(-?\d+)\s*")
_ZI_PROTECTION_RE = re.compile(r"\s*protection:\s*\((-?\d+(?:,\s*-?\d+)*)\)\s*")
# Kept from the zone header block and the lines after pagesets.
_ZI_ZONE_KEYS = frozenset((
    "pages free", "boost", "min", "low", "high", "promo", "spanned", "present",
    "managed", "cma", "start_pfn", "reserved_highatomic", "free_highatomic",
))
# Zone.fields names for the counters that are not Zone members.
_ZI_FIELDS = {"cma": "cma_pages", "free_highatomic": "nr_free_highatomic"}


@dataclasses.dataclass
class _ZoneInfo:
    node: int
    name: str
    path: Path
    values: dict[str, int] = dataclasses.field(default_factory=dict)
    protection: list[int] = dataclasses.field(default_factory=list)
    pcp: list[Pcp] = dataclasses.field(default_factory=list)

    @property
    def fields(self) -> dict[str, int]:
        return {f: self.values[k] for k, f in _ZI_FIELDS.items() if k in self.values}

    def require_protection(self) -> list[int]:
        if not self.protection:
            raise BuddyscopeError(
                f"{self.path}: no 'protection' for zone {self.name} on node {self.node}"
            )
        return self.protection

    def require(self, key: str) -> int:
        try:
            return self.values[key]
        except KeyError:
            raise BuddyscopeError(
                f"{self.path}: no '{key}' for zone {self.name} on node {self.node}"
            ) from None


def _parse_zoneinfo(text: str, path: Path) -> dict[tuple[int, str], _ZoneInfo]:
    zones: dict[tuple[int, str], _ZoneInfo] = {}
    zone: Optional[_ZoneInfo] = None
    cpu: Optional[dict[str, int]] = None  # the pageset being read
    cpu_indent = 0
    lineno = 0

    def end_cpu(lineno: int, line: str) -> None:
        nonlocal cpu
        if cpu is None or zone is None:
            return
        try:
            zone.pcp.append(Pcp(
                cpu=cpu.pop("cpu"), count=cpu.pop("count"), high=cpu.pop("high"),
                batch=cpu.pop("batch"), fields=cpu,
            ))
        except KeyError as e:
            raise _unexpected(path, lineno, line, f"pageset without {e.args[0]} before line") from None
        cpu = None

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if m := _ZI_ZONE_RE.fullmatch(line):
            end_cpu(lineno, line)
            nid_name = (int(m.group(1)), m.group(2))
            if nid_name in zones:
                raise _unexpected(path, lineno, line, "a zone seen twice on line")
            zone = zones[nid_name] = _ZoneInfo(nid_name[0], nid_name[1], path)
            continue
        if zone is None:
            raise _unexpected(path, lineno, line)
        if line.strip() in ("per-node stats", "pagesets"):
            continue
        if p := _ZI_PROTECTION_RE.fullmatch(line):
            zone.protection = [int(v) for v in p.group(1).split(",")]
            continue
        m = _ZI_VALUE_RE.fullmatch(line)
        if not m:
            raise _unexpected(path, lineno, line)
        indent, key, value = len(m.group(1)), m.group(2), int(m.group(3))
        if cpu is not None and (indent <= cpu_indent or key == "cpu"):
            end_cpu(lineno, line)
        if key == "cpu":
            if any(pcp.cpu == value for pcp in zone.pcp):
                raise _unexpected(path, lineno, line, "a CPU seen twice in one zone on line")
            cpu, cpu_indent = {"cpu": value}, indent
        elif cpu is not None:
            if key in cpu:
                raise _unexpected(path, lineno, line, f"a second '{key}' for one CPU on line")
            cpu[key] = value
        elif key in _ZI_ZONE_KEYS:
            if key in zone.values:
                raise _unexpected(path, lineno, line, f"a second '{key}' for one zone on line")
            zone.values[key] = value
        # Anything else is a node stat ("per-node stats"), a zone vm stat, a
        # NUMA event, "vm stats threshold" or "node_unreclaimable": not kept.
    end_cpu(lineno + 1, "")
    if not zones:
        raise BuddyscopeError(f"{path}: no zones")
    return zones
