"""Snapshot files of format 2 (PFN lists packed, ``model/pfnarray.py``)
against format 1 (lists of ints, every committed snapshot and recording):
the same Snapshot content, the same model results, the same ``--json`` text;
and packed lists that are not what docs/snapshot-format.md says refused in
one line naming the list."""

import array
import copy
import gzip
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import buddyscope.model.snapshot as snapshot_module
from buddyscope.model import pfnarray
from buddyscope.model.allocator import Allocator
from buddyscope.model.fixture import Fixture
from buddyscope.model.predict import predict_request
from buddyscope.model.replay import Replayer
from buddyscope.model.request import make_request
from buddyscope.model.snapshot import FORMAT, Snapshot, SnapshotError

import recorded

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = sorted((ROOT / "fixtures" / "snapshots").glob("*.json.gz")) + [
    ROOT / "tests" / "bench" / "data" / "6.1-1cpu-2g-fragmented.json.gz"]
RECORDINGS = sorted((ROOT / "fixtures" / "recordings").glob("*.json.gz"))


def _lists(snap):
    return [l for z in snap.zones for a in z.free_area for l in a.free_list] + [
        l for z in snap.zones for p in z.pcp for l in p.lists]


def _content(snap):
    d = snap.to_dict()
    d.pop("format")
    return d


def _resaved(snap, path):
    snap.save(path)
    again = Snapshot.load(path)
    assert again.format == FORMAT == 2
    return again


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.name)
@pytest.mark.parametrize("suffix", [".json.gz", ".json"])
def test_format_2_holds_what_format_1_held(path, suffix, tmp_path):
    old = Snapshot.load(path)
    assert old.format == 1 and all(type(l) is list for l in _lists(old))
    new = _resaved(old, tmp_path / f"s{suffix}")
    # Arrays, not a Python int per page, with the same PFNs in the same order.
    assert all(isinstance(l, array.array) for l in _lists(new))
    assert [list(l) for l in _lists(new)] == _lists(old)
    assert _content(new) == _content(old)
    # Packed: the file holds no list of PFNs as JSON numbers.
    text = (tmp_path / f"s{suffix}").read_bytes()
    raw = json.loads(gzip.decompress(text) if suffix == ".json.gz" else text)
    area = raw["zones"][-1]["free_area"][0]
    assert all(set(l) == {"count", "word", "data"} for l in area["free_list"])


def _outcomes(a, order, gfp, n):
    return [(o.pfn, o.zone, o.kind, o.events, o.refill)
            for o in predict_request(a, make_request(a, order, 0, gfp=gfp), n)]


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.name)
def test_the_model_predicts_the_same_from_either_format(path, tmp_path):
    old = Snapshot.load(path)
    new = _resaved(old, tmp_path / "s.json.gz")
    for order, gfp in ((0, "GFP_KERNEL"), (3, "GFP_KERNEL|__GFP_COMP"), (9, "GFP_TRANSHUGE")):
        a, b = Allocator(old), Allocator(new)
        assert _outcomes(a, order, gfp, 300) == _outcomes(b, order, gfp, 300)
        a.link_all(), b.link_all()
        for d in ("nxt", "prv", "buddy", "on_pcp", "pcp_mt", "allocated"):
            assert getattr(a, d) == getattr(b, d)


def test_every_recording_keeps_its_snapshot_in_format_2(tmp_path):
    for path in RECORDINGS:
        old = recorded.fixture(path)   # Fixture.load, once per run: read only
        old.save(tmp_path / "r.json.gz")
        new = Fixture.load(tmp_path / "r.json.gz")
        # (Recorded before format 2, or since: compact-memory.)
        assert new.snapshot.format == FORMAT and old.snapshot.format in (1, FORMAT), path.name
        assert _content(new.snapshot) == _content(old.snapshot), path.name
        assert (new.trace, new.provenance) == (old.trace, old.provenance), path.name


@pytest.mark.parametrize("name", ["5.10-1cpu-fork-exec", "6.1-1cpu-fork-exec",
                                  "6.12-2cpu-fork-exec", "7.2-1cpu-pressure-tmpfs"])
def test_a_recording_replays_the_same_from_either_format(name, tmp_path):
    old = recorded.fixture(name)   # Fixture.load, once per run: read only
    old.save(tmp_path / "r.json.gz")
    new = Fixture.load(tmp_path / "r.json.gz")
    events = recorded.events(name)
    enabled = old.provenance.get("events_enabled")
    # The replay of the old format is the one test_streaming checks
    # (Replayer(old.snapshot, events_enabled=enabled).run(events)), computed once per run.
    a = recorded.replayed(name, enabled=True).to_dict()
    b = Replayer(new.snapshot, events_enabled=enabled).run(events).to_dict()
    a.pop("seconds", None), b.pop("seconds", None)
    assert a["hits"] > 0 and a == b


@pytest.mark.parametrize("path", SNAPSHOTS, ids=lambda p: p.name)
def test_json_is_streamed_as_dumps_writes_it(path, tmp_path, monkeypatch):
    old = Snapshot.load(path)
    new = _resaved(old, tmp_path / "s.json.gz")
    for chunk in (1 << 16, 7):  # 7: every list of more than 7 goes out in pieces
        monkeypatch.setattr(snapshot_module, "_CHUNK", chunk)
        for snap in (old, new):
            assert "".join(snap.iter_json()) == json.dumps(snap.to_dict())


@settings(max_examples=200, deadline=None)
@given(pfns=st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 2**20), max_size=300),
       order=st.integers(0, 20))
def test_pack_unpack_and_alignment(pfns, order):
    obj = json.loads(json.dumps(pfnarray.pack(pfns)))
    a = pfnarray.unpack(obj)
    assert list(a) == pfns
    assert a.itemsize == (4 if all(p < 2**32 for p in pfns) else 8)
    assert pfnarray.check_aligned(a, order) == all(p % (1 << order) == 0 for p in pfns)


def _packed_file(tmp_path, change):
    """The 6.1 snapshot in format 2, its JSON changed by *change*."""
    snap = Snapshot.load(SNAPSHOTS[1])
    d = snap.to_file_dict()
    change(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    return path


def _set_list(d, value):
    d["zones"][1]["free_area"][2]["free_list"][1] = value


def _packed(pfns, **over):
    return {**pfnarray.pack(pfns), **over}


@pytest.mark.parametrize("change, message", [
    (lambda d: _set_list(d, _packed([4, 8], data="not base64!")), r"free_list\[1\]: data is not base64"),
    (lambda d: _set_list(d, _packed([4, 8], data="aGVsbG8=")), r"free_list\[1\]: data is not zlib"),
    (lambda d: _set_list(d, _packed([4, 8], count=3)), r"free_list\[1\]: data does not hold 3 words"),
    (lambda d: _set_list(d, _packed([4, 8], word=2)), r"free_list\[1\]: word is 2, not 4 or 8"),
    (lambda d: _set_list(d, _packed([4, 8], count=-1)), r"free_list\[1\]: count is -1, not a number"),
    (lambda d: _set_list(d, _packed([4, 8], count=2**40)),
     r"count is 1099511627776, more than the \d+ PFNs the file may still hold"),
    (lambda d: _set_list(d, _packed([4, 8], extra=1)), r"exactly the keys count, word, data"),
    (lambda d: _set_list(d, {"count": 0}), r"exactly the keys count, word, data, not count"),
    # Unpacked well but not what the schema allows: named as for a list of ints.
    (lambda d: _set_list(d, _packed([0x1004, 0x1006])), r"free_list\[1\]\[1\] is 0x1006, not aligned to order 2"),
    (lambda d: _set_list(d, _packed([0x1004, 2**40])), r"free_list\[1\]\[1\] is 1099511627776, not a pfn of the zone"),
    (lambda d: d["zones"][1]["pcp"][0]["lists"].__setitem__(0, _packed([0xFFFFFFFFF])),
     r"zones\[1\]\.pcp\[0\]\.lists\[0\]\[0\] is 68719476735, not a pfn of the zone"),
])
def test_a_bad_packed_list_is_refused_in_one_line(tmp_path, change, message):
    path = _packed_file(tmp_path, change)
    with pytest.raises(SnapshotError, match=message) as e:
        Snapshot.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_file_can_unpack_to_at_most_max_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot_module, "MAX_ENTRIES", 500)
    snap = Snapshot.load(SNAPSHOTS[1])
    path = tmp_path / "s.json.gz"
    snap.save(path)
    assert sum(map(len, _lists(snap))) > 500
    with pytest.raises(SnapshotError, match=r"more than the \d+ PFNs the file may still hold"):
        Snapshot.load(path)


def test_a_packed_list_in_a_format_1_file_is_refused(tmp_path):
    path = _packed_file(tmp_path, lambda d: d.__setitem__("format", 1))
    with pytest.raises(SnapshotError, match=r"free_list\[0\] is dict .*, not a list"):
        Snapshot.load(path)


def test_plain_lists_read_in_format_2(tmp_path):
    """A format 2 file may hold lists of ints (what --json prints)."""
    snap = Snapshot.load(SNAPSHOTS[1])
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**snap.to_dict(), "format": 2}))
    again = Snapshot.load(path)
    assert again.format == 2 and _content(again) == _content(snap)


def test_the_in_memory_arrays_survive_what_the_model_and_tests_do(tmp_path):
    """deepcopy, append (as the probe-anomaly tests do) and to_dict."""
    snap = _resaved(Snapshot.load(SNAPSHOTS[1]), tmp_path / "s.json.gz")
    twin = copy.deepcopy(snap)
    lst = twin.zones[1].free_area[0].free_list[1]
    lst.append(lst[0])
    assert len(twin.zones[1].free_area[0].free_list[1]) == len(snap.zones[1].free_area[0].free_list[1]) + 1
    assert twin.to_dict()["zones"][1]["free_area"][0]["free_list"][1][-1] == lst[0]


def test_words_of_8_bytes_when_a_pfn_does_not_fit_in_32_bits():
    rng = random.Random(1)
    pfns = [rng.randrange(2**32, 2**52) >> 9 << 9 for _ in range(50)] + [0]
    a = pfnarray.unpack(pfnarray.pack(pfns), 100)
    assert a.itemsize == 8 and list(a) == pfns
