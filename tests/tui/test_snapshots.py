"""SVG snapshots of every panel at 80x24 and 200x50
(pytest-textual-snapshot). After a deliberate change of the look, look at
the report pytest writes, then run ``pytest tests/tui --snapshot-update``.

Snapshots come from the committed snapshot files (fixtures/snapshots), the
committed procfs capture (fixtures/procfs/7.2, for the History panel of a
source read again and again) and one recording (the Replay panel: re-record
it and these snapshots are updated with it). The Trace panel (``tui
--lab``) is drawn without a guest: a watcher that hands out a real
recording's snapshot and its own traced events as the first window (7.2,
2 vCPUs, fork-exec), ``m`` marking the first allocation the model got wrong.

``test_screen[readme-120x28]`` is the picture in the README."""

import shutil
from pathlib import Path

import pytest

from buddyscope.probe.sources import SourceSpec
from buddyscope.wiring import open_session

from tuihelp import REC_61, RECORDINGS, REPO, SNAP_72, PinnedApp, RecordingWatcher, app_on, settle

pytest.importorskip("pytest_textual_snapshot")

PROCFS_72 = REPO / "fixtures" / "procfs" / "7.2"


def _before(keys):
    async def run_before(pilot):
        app = pilot.app
        await settle(app, pilot)
        presses = keys
        if presses and isinstance(presses[0], dict):
            # A request typed into the prediction panel first.
            for field, value in presses[0].items():
                app.main.query_one(f"#predict-{field}").value = value
            app.main.query_one("#predict-panel").submit()
            await settle(app, pilot)
            presses = presses[1:]
        for k in presses:
            if k.startswith("type:"):
                await pilot.press(*k[len("type:"):])
            else:
                await pilot.press(k)
            await settle(app, pilot)
    return run_before


def _procfs():
    return PinnedApp(open_session(SourceSpec(procfs=True, procfs_root=str(PROCFS_72))),
                     interval=None)


def _traced():
    from buddyscope.model.fixture import Fixture
    from buddyscope.model.ftrace import parse_lines
    from buddyscope.tui.session import Session

    fx = Fixture.load(RECORDINGS / "7.2-2cpu-fork-exec.json.gz")
    return PinnedApp(Session(RecordingWatcher(fx, parse_lines(fx.trace).events)), interval=None)


# Order 4 is above the pcp orders: buddy allocations that split blocks.
_COMPARE = ({"order": "4", "what": "Unmovable", "n": "3"}, "6")
PANELS = [
    # (name, app, keys)
    ("free-area", lambda: app_on(SNAP_72), ()),
    ("pcp", lambda: app_on(SNAP_72), ("2",)),
    ("watermarks", lambda: app_on(SNAP_72), ("3",)),
    ("pageblocks", lambda: app_on(SNAP_72), ("4",)),
    ("predict", lambda: app_on(SNAP_72), ("5",)),
    ("compare", lambda: app_on(SNAP_72), _COMPARE),
    ("zones", lambda: app_on(SNAP_72), ("9",)),
    ("find", lambda: app_on(SNAP_72), ("0", "type:0x646b", "enter")),
    ("list-found", lambda: app_on(SNAP_72), ("0", "type:0x646b", "enter", "enter")),
    ("help", lambda: app_on(SNAP_72), ("question_mark",)),
    ("help-end", lambda: app_on(SNAP_72), ("question_mark", "end")),
    ("replay", lambda: app_on(REC_61), ("7", "n", "n", "N")),
    # "1": one more key and settle, as every other procfs case has.
    ("procfs-free", _procfs, ("1",)),
    ("procfs-pcp", _procfs, ("2",)),
    ("procfs-pageblocks", _procfs, ("4",)),
    ("procfs-history", _procfs, ("r", "r", "7")),
    ("trace", _traced, ("r", "8", "m")),
]
CASES = [(f"{name}-{w}x{h}", make, keys, (w, h))
         for name, make, keys in PANELS for w, h in ((80, 24), (200, 50))]
# The README's picture: a real 7.2 guest's DMA32, and the state the model
# says three order-4 Unmovable allocations leave.
CASES.append(("readme-120x28", lambda: app_on(SNAP_72), _COMPARE, (120, 28)))


@pytest.mark.parametrize("make, keys, size", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_screen(snap_compare, make, keys, size):
    assert snap_compare(make(), terminal_size=size, run_before=_before(keys))
