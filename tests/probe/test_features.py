"""``kernel.features`` in the committed snapshots and recordings: the type
facts ``detect_features`` read from each lab kernel's vmlinux (written in by
``tools/annotate_features.py``). They must tell the four kernels apart,
6.12 from 7.2 included, agree with what each kernel is known to have, and
agree with the other facts the probe recorded from the same types. Files
written before the field existed still load, with no features."""

import copy
import gzip
import json
from pathlib import Path

import pytest

from buddyscope.model.fixture import Fixture
from buddyscope.model.snapshot import Snapshot

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECORDINGS = sorted((FIXTURES / "recordings").glob("*.json.gz"))
SNAPSHOTS = sorted((FIXTURES / "snapshots").glob("*.json.gz"))

PCP_6_7 = {"per_cpu_pages.free_count", "per_cpu_pages.high_min", "per_cpu_pages.alloc_factor"}
PAGE_6_0 = {"page.buddy_list", "page.pcp_list"}
# What each lab kernel's types have (Debian builds: 6.12.y has the
# nr_free_highatomic and rmqueue_mode backports; 7.2 is built with CONFIG_CMA).
EXPECTED = {
    "5.10": set(),
    "6.1": PAGE_6_0 | {"per_cpu_pages.free_factor"},
    "6.12": PAGE_6_0 | PCP_6_7 | {"enum rmqueue_mode", "zone.nr_free_highatomic"},
    "7.2": PAGE_6_0 | PCP_6_7 | {"enum rmqueue_mode", "zone.nr_free_highatomic",
                                 "PB_migrate_isolate", "zone.trylock_free_pages", "MIGRATE_CMA"},
}
KNOWN = set().union(*EXPECTED.values())


def _load(path):
    """(series, snapshot, the file's own kernel object) of a committed file."""
    raw = json.loads(gzip.decompress(path.read_bytes()))
    if path in RECORDINGS:
        fx = Fixture.load(path)
        return fx.provenance["kernel_series"], fx.snapshot, raw["snapshot"]["kernel"]
    # The snapshots have no provenance; their names start with the series.
    return path.name.split("-")[0], Snapshot.load(path), raw["kernel"]


FILES = RECORDINGS + SNAPSHOTS


@pytest.fixture(scope="module", params=FILES, ids=[f"{f.parent.name}/{f.name.removesuffix('.json.gz')}" for f in FILES])
def committed(request):
    return _load(request.param)


def test_every_file_is_annotated(committed):
    _, snap, raw_kernel = committed
    # In the file itself, not only the loader's default (5.10 has none).
    assert "features" in raw_kernel
    assert snap.kernel.features == raw_kernel["features"]
    assert len(set(snap.kernel.features)) == len(snap.kernel.features)


def test_features_are_the_kernels(committed):
    series, snap, _ = committed
    have = set(snap.kernel.features)
    assert have & KNOWN == EXPECTED[series]


def test_what_tells_the_kernels_apart(committed):
    series, snap, _ = committed
    f = set(snap.kernel.features)
    # 7.2: isolation is a pageblock bit of its own; in no older kernel.
    assert ("PB_migrate_isolate" in f) == (series == "7.2")
    assert ("zone.trylock_free_pages" in f) == (series == "7.2")
    # Debian 6.12 and 7.2: the __rmqueue_claim / __rmqueue_steal split.
    assert ("enum rmqueue_mode" in f) == (series in ("6.12", "7.2"))
    assert ("zone.nr_free_highatomic" in f) == (series in ("6.12", "7.2"))
    # 6.1 alone has free_factor: 5.14 added it, 6.7 replaced it by free_count.
    assert ("per_cpu_pages.free_factor" in f) == (series == "6.1")
    assert ("per_cpu_pages.free_count" in f) == (series in ("6.12", "7.2"))
    # 5.10 links free pages through lru: none of the 6.0 names; the others all.
    if series == "5.10":
        assert not PAGE_6_0 & f
    else:
        assert PAGE_6_0 <= f


def test_features_agree_with_the_rest_of_the_snapshot(committed):
    """The same types gave the migratetype names, the pcp members and the zone
    counters recorded beside the features."""
    _, snap, _ = committed
    f = set(snap.kernel.features)
    assert ("MIGRATE_CMA" in f) == ("CMA" in snap.kernel.migratetypes)
    for z in snap.zones:
        assert ("zone.nr_free_highatomic" in f) == ("nr_free_highatomic" in z.fields)
        for pcp in z.pcp:
            for member in ("free_factor", "high_min", "alloc_factor", "free_count"):
                assert (f"per_cpu_pages.{member}" in f) == (member in pcp.fields), (z.name, pcp.cpu, member)


def test_one_feature_set_per_kernel_and_each_different():
    sets = {}
    for path in FILES:
        series, snap, _ = _load(path)
        sets.setdefault(series, set()).add(frozenset(snap.kernel.features))
    assert sorted(sets) == sorted(EXPECTED)
    assert all(len(s) == 1 for s in sets.values()), sets
    distinct = {next(iter(s)) for s in sets.values()}
    assert len(distinct) == len(EXPECTED)


def test_a_snapshot_without_features_loads_with_none(tmp_path):
    d = Snapshot.load(FIXTURES / "snapshots" / "7.2-2cpu-512m.json.gz").to_dict()
    assert d["kernel"]["features"]
    old = copy.deepcopy(d)
    del old["kernel"]["features"]
    snap = Snapshot.from_dict(old)
    assert snap.kernel.features == []
    assert snap.format == 1
    # Saved again, the field is written (empty) and reads back the same.
    snap.save(tmp_path / "s.json.gz")
    again = json.loads(gzip.decompress((tmp_path / "s.json.gz").read_bytes()))
    assert again["kernel"]["features"] == []
    assert Snapshot.load(tmp_path / "s.json.gz").kernel.features == []
    # Everything else is as it was (written in the newest format: packed lists).
    again = Snapshot.load(tmp_path / "s.json.gz").to_dict()
    del d["kernel"]["features"], again["kernel"]["features"]
    assert (again.pop("format"), d.pop("format")) == (2, 1)
    assert again == d


def test_a_recording_without_features_loads_with_none(tmp_path):
    raw = json.loads(gzip.decompress((FIXTURES / "recordings" / "7.2-1cpu-thp.json.gz").read_bytes()))
    del raw["snapshot"]["kernel"]["features"]
    (tmp_path / "r.json").write_text(json.dumps(raw))
    fx = Fixture.load(tmp_path / "r.json")
    assert fx.snapshot.kernel.features == []
    assert Snapshot.load(tmp_path / "r.json").kernel.features == []


def test_features_round_trip(tmp_path):
    snap = Snapshot.load(FIXTURES / "snapshots" / "6.12-2cpu-512m.json.gz")
    for name in ("s.json.gz", "s.json"):
        snap.save(tmp_path / name)
        assert Snapshot.load(tmp_path / name).kernel.features == snap.kernel.features
