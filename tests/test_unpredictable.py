"""Default tier: how ``kernel.unpredictable`` reaches the user (the probe
reading it from a real kernel is checked in tests/probe/test_unpredictable_lab.py):
it survives a save and load, files without it read as [], and predict,
replay and the TUI header say that exact prediction is off."""

import json

from buddyscope import cli
from buddyscope.model.fixture import Fixture
from buddyscope.model.snapshot import Snapshot
from buddyscope.probe.sources import bundled_snapshot
from buddyscope.tui.views import header_view


def _shuffled(tmp_path):
    snap = Snapshot.load(bundled_snapshot())
    assert snap.kernel.unpredictable == []  # written before the field existed
    snap.kernel.unpredictable = ["page_alloc.shuffle"]
    path = tmp_path / "shuffled.json.gz"
    snap.save(path)
    return path


def test_the_field_round_trips_and_predict_warns(tmp_path, capsys):
    path = _shuffled(tmp_path)
    assert Snapshot.load(path).kernel.unpredictable == ["page_alloc.shuffle"]
    assert cli.main(["predict", str(path), "--order", "0", "--migratetype", "Movable"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: exact prediction is off: free-list shuffling is on (page_alloc.shuffle)" in out
    assert cli.main(["predict", str(bundled_snapshot()), "--order", "0", "--migratetype", "Movable"]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_replay_says_it_too(tmp_path, capsys):
    import glob
    import os

    fixtures = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "fixtures", "recordings", "6.1-1cpu-*.json.gz")))
    fx = Fixture.load(fixtures[0])
    fx.snapshot.kernel.unpredictable = ["page_alloc.shuffle", "page_reporting"]
    path = tmp_path / "fx.json.gz"
    fx.save(path)
    assert cli.main(["replay", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["unpredictable"] == ["page_alloc.shuffle", "page_reporting"]
    assert len(got["exact_prediction_off"]) == 2
    assert cli.main(["replay", str(path)]) == 0
    assert "free page reporting is on" in capsys.readouterr().out


def test_the_tui_header_says_it(tmp_path):
    snap = Snapshot.load(_shuffled(tmp_path))
    assert header_view("file", snap).unpredictable == \
        "exact prediction off: free lists shuffled (page_alloc.shuffle)"
    assert header_view("file", Snapshot.load(bundled_snapshot())).unpredictable == ""
