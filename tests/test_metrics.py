"""``buddyscope metrics``: the text exposition of a real snapshot, an
exporter that survives failed reads, and a real Prometheus server scraping
it (Debian's ``prometheus``; skipped where it is not installed)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from buddyscope.errors import BuddyscopeError
from buddyscope.metrics import make_registry, render
from buddyscope.model.fragmentation import contig_page_info, fragmentation_index, unusable_free_index
from buddyscope.model.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[1]
SNAP = ROOT / "fixtures" / "snapshots" / "6.1-2cpu-512m.json.gz"
PROCFS_61 = ROOT / "fixtures" / "procfs" / "6.1"


def _samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _key(name, **labels):
    return (name, tuple(sorted((k, str(v)) for k, v in labels.items())))


def test_exposition_of_a_real_snapshot_carries_its_values():
    snap = Snapshot.load(SNAP)
    got = _samples(render(make_registry(lambda: snap, "file")).decode())
    assert got[_key("buddyscope_up", source="file")] == 1
    k = snap.kernel
    for z in snap.zones:
        lz = dict(node=z.node, zone=z.name)
        for order, a in enumerate(z.free_area):
            assert got[_key("node_buddyinfo_blocks", size=order, **lz)] == a.nr_free
            for mt, name in enumerate(k.migratetypes):
                assert got[_key("buddyscope_free_blocks", order=order, migratetype=name, **lz)] == \
                    len(a.free_list[mt])
            info = contig_page_info([x.nr_free for x in z.free_area], order)
            assert got[_key("buddyscope_unusable_free_ratio", order=order, **lz)] == \
                unusable_free_index(order, info) / 1000
            assert got[_key("buddyscope_fragmentation_index", order=order, **lz)] == \
                fragmentation_index(order, info) / 1000
        for name, v in z.watermarks.items():
            assert got[_key("buddyscope_zone_watermark_pages", watermark=name, **lz)] == v
        for p in z.pcp:
            assert got[_key("buddyscope_pcp_pages", cpu=p.cpu, **lz)] == p.count
            assert got[_key("buddyscope_pcp_high_pages", cpu=p.cpu, **lz)] == p.high
            assert got[_key("buddyscope_pcp_batch_pages", cpu=p.cpu, **lz)] == p.batch
        assert got[_key("buddyscope_zone_free_pages", **lz)] == z.nr_free_pages
        for mt, name in enumerate(k.migratetypes):
            assert got[_key("buddyscope_pageblocks", migratetype=name, **lz)] == \
                z.pageblock_migratetypes.count(mt)
        for pindex, pl in enumerate(k.pcp_lists):
            name = "/".join(k.migratetypes[m] for m in pl.migratetypes)
            assert got[_key("buddyscope_pcp_list_blocks", cpu=0, order=pl.order, migratetype=name,
                            **lz)] == len(z.pcp[0].lists[pindex])


def test_procfs_has_no_list_or_pageblock_metrics():
    from buddyscope.probe.procfs import read_procfs

    snap = read_procfs(PROCFS_61)
    names = {k[0] for k in _samples(render(make_registry(lambda: snap, "procfs")).decode())}
    assert "node_buddyinfo_blocks" in names and "buddyscope_free_blocks" in names
    assert not names & {"buddyscope_pageblocks", "buddyscope_pcp_list_blocks"}


def test_unusable_index_of_a_real_procfs_capture_matches_the_kernels_definition():
    # From /proc/buddyinfo of a real 6.1 guest: unusable_free_index is the
    # share of free pages in blocks below the order, computed here directly.
    from buddyscope.probe.procfs import read_procfs

    snap = read_procfs(PROCFS_61)
    got = _samples(render(make_registry(lambda: snap, "procfs")).decode())
    for z in snap.zones:
        nr = [a.nr_free for a in z.free_area]
        free = sum(n << o for o, n in enumerate(nr))
        for order in range(len(nr)):
            small = sum(n << o for o, n in enumerate(nr) if o < order)
            want = small * 1000 // free / 1000 if free else 1.0
            assert got[_key("buddyscope_unusable_free_ratio", node=z.node, zone=z.name,
                            order=order)] == want


def test_a_failed_read_is_reported_and_the_next_one_recovers():
    snap = Snapshot.load(SNAP)
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 2:
            raise BuddyscopeError("/proc/zoneinfo: cannot read")
        if len(calls) == 4:
            raise ValueError("a bug, not bad input")
        return snap

    logged = []
    reg = make_registry(read, "procfs", logged.append)
    first, second, third, fourth = (_samples(render(reg).decode()) for _ in range(4))
    up, errors = _key("buddyscope_up", source="procfs"), _key("buddyscope_read_errors_total", source="procfs")
    assert (first[up], first[errors]) == (1, 0)
    assert (second[up], second[errors]) == (0, 1)
    assert not any(k[0] == "node_buddyinfo_blocks" for k in second)
    assert (third[up], third[errors]) == (1, 1)
    assert any(k[0] == "node_buddyinfo_blocks" for k in third)
    assert (fourth[up], fourth[errors]) == (0, 2)
    assert logged == ["buddyscope: read of procfs failed: /proc/zoneinfo: cannot read",
                      "buddyscope: read of procfs failed: ValueError: a bug, not bad input"]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "buddyscope", *map(str, args)], cwd="/",
                          capture_output=True, text=True, timeout=60, **kw)


def test_cli_prints_both_formats():
    p = _cli("metrics", SNAP)
    assert p.returncode == 0, p.stderr
    assert 'node_buddyinfo_blocks{node="0",size="10",zone="DMA32"}' in p.stdout
    p = _cli("metrics", SNAP, "--openmetrics")
    assert p.returncode == 0 and p.stdout.rstrip().endswith("# EOF")


def test_cli_writes_a_textfile_in_place(tmp_path):
    out = tmp_path / "buddyscope.prom"
    p = _cli("metrics", SNAP, "-o", out)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["buddyscope.prom"]
    assert _samples(out.read_text())[_key("buddyscope_up", source="file")] == 1
    p = _cli("metrics", SNAP, "-o", tmp_path / "missing" / "x.prom")
    assert p.returncode == 1 and p.stderr.startswith("buddyscope: error: cannot write")
    assert len(p.stderr.strip().splitlines()) == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = _cli("metrics", SNAP, "--listen", f"127.0.0.1:{port}")
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        f"buddyscope: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    p = _cli("metrics", SNAP, "--listen", "localhost")
    assert p.returncode == 1 and "--listen wants ADDR:PORT" in p.stderr and "Traceback" not in p.stderr


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Debian's prometheus is not installed (tests/run installs it as root)")
def test_a_real_prometheus_scrapes_the_exporter(tmp_path):
    snap = Snapshot.load(SNAP)
    exp_port, prom_port = _free_port(), _free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "buddyscope", "metrics", str(SNAP),
                                 "--listen", f"127.0.0.1:{exp_port}"], cwd="/",
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: buddyscope\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exp_port}']\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

        def query(q):
            return json.loads(_get(api + urllib.parse.quote(q)))["data"]["result"]

        deadline = time.monotonic() + 60
        result = []
        while time.monotonic() < deadline:
            assert exporter.poll() is None, exporter.stderr.read()
            assert prom.poll() is None, "prometheus exited"
            try:
                result = query('up{job="buddyscope"}')
            except OSError:
                result = []
            if result and result[0]["value"][1] == "1" and query("node_buddyinfo_blocks"):
                break
            time.sleep(0.5)
        assert result and result[0]["value"][1] == "1", result
        dma32 = snap.zone("DMA32")
        got = query('node_buddyinfo_blocks{zone="DMA32",size="10"}')
        assert float(got[0]["value"][1]) == dma32.free_area[10].nr_free
        got = query('buddyscope_free_blocks{zone="DMA32",order="0",migratetype="Movable"}')
        assert float(got[0]["value"][1]) == len(dma32.free_area[0].free_list[1])
        got = query('sum by (zone) (buddyscope_pcp_pages{zone="DMA32"})')
        assert float(got[0]["value"][1]) == dma32.pcp_pages()
        got = query('buddyscope_zone_watermark_pages{zone="DMA32",watermark="high"}')
        assert float(got[0]["value"][1]) == dma32.watermarks["high"]
    finally:
        for p in (prom, exporter):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_without_root_procfs_gives_buddyinfo_but_no_migratetype_counts(tmp_path):
    # /proc/pagetypeinfo is readable by root only (0400): as another user the
    # procfs source reads the rest, and the exporter shows what it has.
    import shutil as sh

    from buddyscope.probe.procfs import read_procfs

    root = tmp_path / "proc"
    sh.copytree(PROCFS_61, root)
    (root / "pagetypeinfo").unlink()
    snap = read_procfs(root)
    got = _samples(render(make_registry(lambda: snap, "procfs")).decode())
    names = {k[0] for k in got}
    assert got[_key("buddyscope_up", source="procfs")] == 1
    assert "node_buddyinfo_blocks" in names and "buddyscope_unusable_free_ratio" in names
    assert "buddyscope_free_blocks" not in names


def test_a_file_rewritten_or_gone_is_read_again(tmp_path):
    # The exporter on a file another job rewrites: each scrape sees the
    # file as it is now, and a file gone or broken is buddyscope_up 0.
    from buddyscope.probe.sources import FileSource

    path = tmp_path / "s.json.gz"
    shutil.copyfile(SNAP, path)
    reg = make_registry(FileSource(path, reread=True).snapshot, "file")
    up, errors = _key("buddyscope_up", source="file"), _key("buddyscope_read_errors_total", source="file")
    info = [k for k in _samples(render(reg).decode()) if k[0] == "buddyscope_info"]
    assert ("release", "6.1.0-56-amd64") in info[0][1]
    # Its capture, apart from the exporter's source (the file): no label
    # named alike means two things.
    assert ("capture", "qmp") in info[0][1] and not [l for l in info[0][1] if l[0] == "source"]
    shutil.copyfile(ROOT / "fixtures" / "snapshots" / "7.2-2cpu-512m.json.gz", path)
    info = [k for k in _samples(render(reg).decode()) if k[0] == "buddyscope_info"]
    assert ("release", "7.2.13+deb14-amd64") in info[0][1]
    path.write_bytes(b"not a snapshot")
    s = _samples(render(reg).decode())
    assert (s[up], s[errors]) == (0, 1)
    path.unlink()
    s = _samples(render(reg).decode())
    assert (s[up], s[errors]) == (0, 2)
