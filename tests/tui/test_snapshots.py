"""SVG snapshots of the main screens at 80x24 and 200x50
(pytest-textual-snapshot). After a deliberate change of the look, look at
the report pytest writes, then run ``pytest tests/tui --snapshot-update``.

Only the committed snapshots (fixtures/snapshots) are used: recordings get
re-recorded, and the replay screen is checked through the pilot
(test_app.py::test_replay_steps_forward_and_back)."""

import pytest

from tuihelp import SNAP_72, app_on, settle

pytest.importorskip("pytest_textual_snapshot")


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
            await pilot.press(k)
            await settle(app, pilot)
    return run_before


CASES = [
    # (id, file, keys, size)
    ("free-area-80x24", SNAP_72, (), (80, 24)),
    ("predict-80x24", SNAP_72, ("5",), (80, 24)),
    ("pcp-200x50", SNAP_72, ("2",), (200, 50)),
    ("watermarks-200x50", SNAP_72, ("3",), (200, 50)),
    ("pageblocks-200x50", SNAP_72, ("4",), (200, 50)),
    # Order 4 is above the pcp orders: buddy allocations that split blocks.
    ("compare-200x50", SNAP_72, ({"order": "4", "what": "Unmovable", "n": "3"}, "6"), (200, 50)),
]


@pytest.mark.parametrize("path, keys, size", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_screen(snap_compare, path, keys, size):
    assert snap_compare(app_on(path), terminal_size=size, run_before=_before(keys))
