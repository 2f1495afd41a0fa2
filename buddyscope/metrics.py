"""
Metrics
-------

``buddyscope metrics``: the allocator state of one host as Prometheus
metrics, with the Prometheus client library. Printed once (for
node_exporter's textfile collector) or served on ``/metrics``, reading the
source again at each scrape. A read that fails does not stop the exporter:
the scrape reports ``buddyscope_up 0`` and counts the error.

Names follow Prometheus conventions (``_pages``, ``_ratio``, base units,
labels for dimensions); ``node_buddyinfo_blocks{node,zone,size}`` is
node_exporter's own (its buddyinfo collector, off by default), with the same
labels and values, so dashboards built on it work unchanged.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, Optional

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from buddyscope import __version__
from buddyscope.errors import BuddyscopeError
from buddyscope.model.fragmentation import (
    contig_page_info,
    fragmentation_index,
    unusable_free_index,
)
from buddyscope.model.snapshot import Snapshot

__all__ = ("SnapshotCollector", "make_registry", "parse_listen", "render", "serve", "write_atomically")


class SnapshotCollector(Collector):
    """Reads a snapshot at each scrape and turns it into metric families.

    :param read: returns a fresh :class:`Snapshot`; may raise.
    """

    def __init__(self, read: Callable[[], Snapshot], source: str,
                 log: Callable[[str], None] = lambda m: None):
        self._read = read
        self._log = log
        self._source = source
        self._errors = 0
        self._last_error: Optional[str] = None

    def collect(self) -> Iterator:
        t0 = time.monotonic()
        try:
            snap: Optional[Snapshot] = self._read()
        except Exception as e:  # noqa: BLE001
            # One bad read, whatever broke, must not take the exporter down:
            # report it in the scrape and in one line on stderr.
            snap = None
            self._errors += 1
            self._last_error = str(e) if isinstance(e, BuddyscopeError) else f"{type(e).__name__}: {e}"
            self._log(f"buddyscope: read of {self._source} failed: {self._last_error}")
        seconds = time.monotonic() - t0
        up = GaugeMetricFamily("buddyscope_up", "1 if the last read of the source succeeded, else 0",
                               labels=["source"])
        up.add_metric([self._source], 1 if snap is not None else 0)
        yield up
        errors = CounterMetricFamily("buddyscope_read_errors",
                                     "Reads of the source that failed since the exporter started",
                                     labels=["source"])
        errors.add_metric([self._source], self._errors)
        yield errors
        yield GaugeMetricFamily("buddyscope_read_duration_seconds",
                                "How long the last read of the source took", value=seconds)
        if snap is not None:
            yield from snapshot_metrics(snap)


def snapshot_metrics(snap: Snapshot) -> Iterator[GaugeMetricFamily]:
    """The metric families of one snapshot."""
    k = snap.kernel
    # "capture", not "source": buddyscope_up's source is what the exporter
    # reads (a file of a qmp capture is source="file", capture="qmp").
    info = GaugeMetricFamily("buddyscope_info", "The kernel read and the buddyscope that read it",
                             labels=["release", "capture", "version"])
    info.add_metric([k.release, snap.capture.source, __version__], 1)
    yield info
    yield GaugeMetricFamily("buddyscope_snapshot_anomalies",
                            "Things met while reading that could not be taken at face value "
                            "(docs/snapshot-format.md)", value=len(snap.capture.anomalies))
    zl = ["node", "zone"]

    def fam(name, doc, extra=()):
        return GaugeMetricFamily(name, doc, labels=zl + list(extra))

    # node_exporter's buddyinfo collector: the same name, labels and values.
    buddy = fam("node_buddyinfo_blocks", "Count of free blocks according to size.", ["size"])
    blocks = fam("buddyscope_free_blocks",
                 "Free blocks on zone->free_area[order].free_list[migratetype]",
                 ["order", "migratetype"])
    free = fam("buddyscope_zone_free_pages", "NR_FREE_PAGES of the zone")
    managed = fam("buddyscope_zone_managed_pages", "Pages the buddy allocator manages in the zone")
    wmark = fam("buddyscope_zone_watermark_pages", "zone->_watermark[] (without the boost)",
                ["watermark"])
    boost = fam("buddyscope_zone_watermark_boost_pages", "zone->watermark_boost")
    highatomic = fam("buddyscope_zone_reserved_highatomic_pages", "zone->nr_reserved_highatomic")
    pcp_count = fam("buddyscope_pcp_pages", "Pages on a CPU's per-cpu lists (per_cpu_pages.count)",
                    ["cpu"])
    pcp_high = fam("buddyscope_pcp_high_pages", "per_cpu_pages.high", ["cpu"])
    pcp_batch = fam("buddyscope_pcp_batch_pages", "per_cpu_pages.batch", ["cpu"])
    unusable = fam("buddyscope_unusable_free_ratio",
                   "Share of free memory in blocks too small for the order "
                   "(unusable_free_index, debugfs extfrag/unusable_index)", ["order"])
    extfrag = fam("buddyscope_fragmentation_index",
                  "__fragmentation_index (debugfs extfrag/extfrag_index): -1 when an allocation "
                  "of the order would succeed; towards 0 failure is for lack of memory, towards "
                  "1 for fragmentation", ["order"])
    # Only a drgn source (debug info) sees these: procfs has no lists and no
    # pageblock types.
    pageblocks = fam("buddyscope_pageblocks", "Pageblocks of each migratetype "
                     "(get_pageblock_migratetype); only with debug info", ["migratetype"])
    pcp_list = fam("buddyscope_pcp_list_blocks", "Blocks on per_cpu_pages.lists[pindex]; "
                   "only with debug info", ["cpu", "order", "migratetype"])
    for z in snap.zones:
        lv = [str(z.node), z.name]
        if z.pageblock_migratetypes is not None:
            for mt, name in enumerate(k.migratetypes):
                pageblocks.add_metric(lv + [name], z.pageblock_migratetypes.count(mt))
        for p in z.pcp:
            for pindex, pfns in enumerate(p.lists or ()):
                pl = k.pcp_lists[pindex]
                pcp_list.add_metric(lv + [str(p.cpu), str(pl.order),
                                          "/".join(k.migratetypes[m] for m in pl.migratetypes)],
                                    len(pfns))
        nr_free = [a.nr_free for a in z.free_area]
        for order, area in enumerate(z.free_area):
            buddy.add_metric(lv + [str(order)], area.nr_free)
            for mt, name in enumerate(k.migratetypes):
                n = area.count(mt)
                if n is not None:
                    blocks.add_metric(lv + [str(order), name], n)
            info = contig_page_info(nr_free, order)
            unusable.add_metric(lv + [str(order)], unusable_free_index(order, info) / 1000)
            extfrag.add_metric(lv + [str(order)], fragmentation_index(order, info) / 1000)
        free.add_metric(lv, z.nr_free_pages)
        managed.add_metric(lv, z.managed_pages)
        for name, v in z.watermarks.items():
            wmark.add_metric(lv + [name], v)
        boost.add_metric(lv, z.watermark_boost)
        highatomic.add_metric(lv, z.nr_reserved_highatomic)
        for p in z.pcp:
            cpu = [str(p.cpu)]
            pcp_count.add_metric(lv + cpu, p.count)
            pcp_high.add_metric(lv + cpu, p.high)
            pcp_batch.add_metric(lv + cpu, p.batch)
    yield from (buddy, blocks, free, managed, wmark, boost, highatomic, pcp_count, pcp_high,
                pcp_batch, unusable, extfrag)
    if pageblocks.samples:
        yield pageblocks
    if pcp_list.samples:
        yield pcp_list


def make_registry(read: Callable[[], Snapshot], source: str,
                  log: Callable[[str], None] = lambda m: None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(read, source, log))
    return registry


def render(registry: CollectorRegistry, openmetrics: bool = False) -> bytes:
    """The text exposition: Prometheus text format 0.0.4 (what node_exporter's
    textfile collector reads), or OpenMetrics."""
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest
    else:
        from prometheus_client.exposition import generate_latest
    return generate_latest(registry)


def write_atomically(path, data: bytes) -> None:
    """Write *path* under a temporary name in its folder and rename it into
    place (:func:`buddyscope.model._atomic.write_atomic`): node_exporter's
    textfile collector never reads half a file."""
    from buddyscope.model._atomic import write_atomic

    try:
        # Readable by node_exporter, another user, whatever the umask.
        write_atomic(path, data, mode=0o644)
    except OSError as e:
        raise BuddyscopeError(f"cannot write {path}: {e.strerror or e}") from None


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:9100`` for IPv6, ``:9100`` for all addresses)."""
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BuddyscopeError(f"--listen wants ADDR:PORT, e.g. 127.0.0.1:9871, not {text!r}")
    return addr.strip("[]") or "0.0.0.0", int(port)


def serve(registry: CollectorRegistry, listen: str, log: Callable[[str], None]) -> None:
    """Serve ``/metrics`` on *listen* until interrupted."""
    from prometheus_client import start_http_server

    addr, port = parse_listen(listen)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise BuddyscopeError(f"cannot listen on {listen}: {e.strerror or e}") from None
    log(f"serving http://{listen}/metrics")
    try:
        while thread.is_alive():
            thread.join(1)
    finally:
        server.shutdown()
