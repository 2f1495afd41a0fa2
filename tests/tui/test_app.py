"""The TUI through Textual's pilot: each panel shows the numbers of a real
fixture (expected values read from the raw JSON, not from the panels'
helpers), the prediction panel agrees with ``predict()``, replay steps both
ways, and a source that fails is shown, not a crash."""

import os
import subprocess
import sys

from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input

from buddyscope.errors import BuddyscopeError
from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.predict import predict
from buddyscope.model.replay import replay
from buddyscope.model.snapshot import Snapshot
from buddyscope.tui.screens import HelpScreen, ListScreen
from buddyscope.tui.widgets import (
    ComparePanel, FreeAreaTable, HeaderBar, LinesView, PageblockMap, PredictPanel,
    ReplayPanel, WatermarkPanel,
)

from tuihelp import REC_61, SNAP_61, SNAP_72, app_on, fake_app, raw, run, screen_text, settle


def cell(table, row, col) -> str:
    return str(table.get_cell_at(Coordinate(row, col))).strip()


def test_free_area_panel_shows_the_fixture():
    d = raw(SNAP_72)
    nr_mt = len(d["kernel"]["migratetypes"])

    async def body(app, pilot):
        t = app.main.query_one(FreeAreaTable)
        shown = {}
        for zi in range(len(d["zones"])):
            name = app.main.views[app.main.zone].name
            shown[name] = [[cell(t, o, c) for c in range(nr_mt + 3)] for o in range(t.row_count)]
            await pilot.press("z")
            await pilot.pause()
        return app.main.views[app.main.zone].name, shown

    first, shown = run(app_on(SNAP_72), body)
    # The zone with the most managed pages comes first.
    assert first == max(d["zones"], key=lambda z: z["managed_pages"])["name"]
    for z in d["zones"]:
        rows = shown[z["name"]]
        assert len(rows) == len(z["free_area"])
        for o, area in enumerate(z["free_area"]):
            assert rows[o][0] == str(o)
            assert rows[o][1:nr_mt + 1] == [str(len(lst)) for lst in area["free_list"]]
            assert rows[o][nr_mt + 1] == str(area["nr_free"])
            assert rows[o][nr_mt + 2] == str(area["nr_free"] << o)


def test_a_free_list_opens_with_its_pfns_in_list_order():
    d = raw(SNAP_72)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")
    pfns = dma32["free_area"][0]["free_list"][0]   # order 0, Unmovable
    assert len(pfns) > 30

    async def body(app, pilot):
        t = app.main.query_one(FreeAreaTable)
        t.focus()
        t.move_cursor(row=0, column=1)
        await pilot.press("enter")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ListScreen)
        v = screen.query_one(LinesView)
        lines = [v._line(i) for i in range(v.count)]
        top = v.render_line(0).text
        v.scroll_end(animate=False)
        await pilot.pause()
        bottom = v.render_line(v.scrollable_content_region.height - 1).text
        title = str(screen.query_one("#list-title").render())
        await pilot.press("escape")
        await pilot.pause()
        return v.count, lines, top, bottom, title, isinstance(app.screen, ListScreen)

    count, lines, top, bottom, title, still = run(app_on(SNAP_72), body, size=(80, 24))
    assert count == len(pfns)
    assert [int(line.split()[1], 16) for line in lines] == pfns
    assert f"{pfns[0]:#010x}" in top and f"{pfns[-1]:#010x}" in bottom
    assert "free_list[Unmovable]" in title and f"{len(pfns)} entries" in title
    assert not still


def test_pcp_panel_shows_counts_and_heads():
    d = raw(SNAP_72)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")

    async def body(app, pilot):
        await pilot.press("2")
        cpus = app.main.query_one("#pcp-cpus", DataTable)
        lists = app.main.query_one("#pcp-lists", DataTable)
        return ([[cell(cpus, r, c) for c in range(4)] for r in range(cpus.row_count)],
                [[cell(lists, r, c) for c in (0, 1, 4, 5)] for r in range(lists.row_count)])

    cpus, lists = run(app_on(SNAP_72), body)
    assert cpus == [[str(p["cpu"]), str(p["count"]), str(p["high"]), str(p["batch"])]
                    for p in dma32["pcp"]]
    assert lists == [[str(p["cpu"]), f"lists[{i}]", str(len(lst)), f"{lst[0]:#x}" if lst else "-"]
                     for p in dma32["pcp"] for i, lst in enumerate(p["lists"])]


def test_watermarks_and_fragmentation_panel():
    d = raw(SNAP_72)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")

    async def body(app, pilot):
        await pilot.press("3")
        await pilot.pause()
        p = app.main.query_one(WatermarkPanel)
        return p.marks, p.frag, screen_text(app)

    marks, frag, text = run(app_on(SNAP_72), body)
    assert marks.free_pages == dma32["nr_free_pages"]
    assert {n: (v, b) for n, v, b in marks.marks} == {
        n: (v, v + dma32["watermark_boost"]) for n, v in dma32["watermarks"].items()}
    nr = [a["nr_free"] for a in dma32["free_area"]]
    free = sum(n << o for o, n in enumerate(nr))
    for r in frag:
        small = sum(n << o for o, n in enumerate(nr) if o < r.order)
        assert r.unusable == small * 1000 // free
    assert "fragmentation (mm/vmstat.c)" in text
    assert f"{dma32['nr_free_pages']}" in text


def test_pageblock_map_is_the_zone():
    d = raw(SNAP_72)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")
    pbo = d["kernel"]["pageblock_order"]

    async def body(app, pilot):
        await pilot.press("4")
        await pilot.pause()
        m = app.main.query_one(PageblockMap)
        return m.view, [m.render_line(y).text for y in range(3)], m._per_row()

    view, lines, per = run(app_on(SNAP_72), body)
    assert view.types == dma32["pageblock_migratetypes"]
    assert lines[0].startswith(f"{(dma32['start_pfn'] >> pbo) << pbo:#09x}")
    assert lines[1].startswith(f"{((dma32['start_pfn'] >> pbo) + per) << pbo:#09x}")
    # Order-10 blocks are free: the pageblocks under them are shown all free.
    top = dma32["free_area"][-1]["free_list"][1][0]
    i = (top >> pbo) - (dma32["start_pfn"] >> pbo)
    assert lines[i // per][10 + i % per] == "▒"


def test_prediction_panel_agrees_with_predict():
    snap = Snapshot.load(SNAP_61)

    async def body(app, pilot):
        await pilot.press("5")
        t = app.main.query_one("#predict-results", DataTable)
        first = [cell(t, r, 1) for r in range(t.row_count)]
        panel = app.main.query_one(PredictPanel)
        for i, v in (("order", "2"), ("what", "GFP_KERNEL|__GFP_ZERO"), ("cpu", "1"), ("n", "5")):
            panel.query_one(f"#predict-{i}", Input).value = v
        panel.query_one("#predict-n", Input).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        second = [(cell(t, r, 1), cell(t, r, 3)) for r in range(t.row_count)]
        cmp = app.main.query_one(ComparePanel).compare
        panel.query_one("#predict-order", Input).value = "99"
        await pilot.press("enter")
        await settle(app, pilot)
        return first, second, cmp, screen_text(app)

    first, second, cmp, error = run(app_on(SNAP_61), body)
    want = predict(snap, 0, 8, migratetype="Movable", cpu=0)
    assert first == [f"{o.pfn:#x}" for o in want]
    want = predict(snap, 2, 5, gfp="GFP_KERNEL|__GFP_ZERO", cpu=1)
    assert second == [(f"{o.pfn:#x}", o.kind) for o in want]
    assert cmp is not None and cmp.changed
    assert "order 99 is out of range" in error


def test_compare_shows_the_state_the_prediction_leaves():
    d = raw(SNAP_61)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")

    async def body(app, pilot):
        await pilot.press("6")
        await pilot.pause()
        p = app.main.query_one(ComparePanel)
        return p.compare, screen_text(app)

    cmp, check = run(app_on(SNAP_61), body)
    # Eight order-0 Movable pages from cpu 0's pcp list (it holds more than 8).
    assert len(dma32["pcp"][0]["lists"][1]) > 8
    cpu0 = next(c for c in cmp.pcp if c[0] == 0)
    assert cpu0[1:] == (dma32["pcp"][0]["count"], dma32["pcp"][0]["count"] - 8)
    assert "a snapshot file does not change" in check


def test_replay_steps_forward_and_back():
    fx = Fixture.load(REC_61)
    events = parse_lines(fx.trace).events
    full = replay(fx.snapshot, events)
    # The first allocation the replay predicts exactly from a pcp list: the
    # page is a pcp list head before its event and gone after it.
    rec = next(r for r in full.records if r.hit and r.path == "pcp")
    i = next(j for j, e in enumerate(events) if e.lineno == rec.lineno and e.name == "mm_page_alloc")

    def head(app):
        return any(r.head == rec.actual_pfn for r in app.main.views[app.main.zone].pcp_lists
                   if r.cpu == rec.cpu)

    async def goto(pilot, app, step):
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*str(step), "enter")
        await settle(app, pilot)

    async def body(app, pilot):
        seen = [(app.step, app._replay_state.step)]
        await goto(pilot, app, i)
        seen.append((app.step, head(app)))
        for key in ("n", "b", "N", "b"):
            await pilot.press(key)
            await settle(app, pilot)
            seen.append((app.step, head(app)))
        await goto(pilot, app, len(events))
        await pilot.press("7")
        await pilot.pause()
        rep = app._replay_state.report
        status = screen_text(app)
        records = app.main.query_one(ReplayPanel).query_one(LinesView).count
        return seen, (rep.hits, rep.allocations), status, records

    seen, score, status, records = run(app_on(REC_61), body)
    assert seen == [(0, 0), (i, True), (i + 1, False), (i, True), (i + 1, False), (i, True)]
    assert score == (full.hits, full.allocations) and records == full.allocations
    assert f"step {len(events)}/{len(events)}: {full.hits}/{full.allocations}" in status


def test_a_read_that_fails_is_shown():
    snap = Snapshot.load(SNAP_61)

    async def body(app, pilot):
        first = (app.main.snapshot is not None, screen_text(app))
        await pilot.press("r")
        await settle(app, pilot)
        bar = app.main.query_one("#header", HeaderBar)
        return first, bar.error, bar.status, app.main.snapshot is snap, app.is_running

    first, error, status, kept, running = run(
        fake_app("qmp", snap, BuddyscopeError("the guest went away")), body)
    assert first[0] and "QEMU guest" in first[1]
    assert error and "read failed: the guest went away" in status
    assert "showing the last good read" in status and kept and running


def test_a_source_that_never_reads():
    async def body(app, pilot):
        bar = app.main.query_one("#header", HeaderBar)
        await pilot.press("6")
        await pilot.pause()
        check = screen_text(app)
        return bar.error, bar.status, app.main.snapshot, check

    error, status, snap, check = run(
        fake_app("live", PermissionError(13, "Permission denied")), body)
    assert error and "PermissionError" in status and snap is None
    assert "no prediction yet" in check


def test_live_sources_say_that_predictions_are_not_checked():
    snap = Snapshot.load(SNAP_61)

    async def body(app, pilot):
        await pilot.press("6")
        await pilot.pause()
        return screen_text(app)

    check = run(fake_app("qmp", snap), body)
    assert "tracing of a QEMU guest is not available" in check


def test_keys_help_pause_interval_theme():
    snap, later = Snapshot.load(SNAP_61), Snapshot.load(SNAP_61)

    async def body(app, pilot):
        out = {}
        await pilot.press("question_mark")
        out["help"] = isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "p")
        out["paused"] = app.paused
        await pilot.press("r")
        await settle(app, pilot)
        # A paused display keeps its state; reads go on when asked.
        out["reads"] = app.session.source.reads
        out["kept while paused"] = app.main.snapshot is snap
        await pilot.press("p", "r")
        await settle(app, pilot)
        out["shown after"] = app.main.snapshot is later
        await pilot.press("i", "i")
        out["interval"] = app.interval
        await pilot.press("t")
        out["theme"] = app.theme
        await pilot.press("ctrl+p")
        out["palette"] = type(app.screen).__name__
        return out

    out = run(fake_app("qmp", snap, later), body)
    assert out == {"help": True, "paused": True, "reads": 2, "kept while paused": True,
                   "shown after": True, "interval": 2.0, "theme": "textual-light",
                   "palette": "CommandPalette"}


def _cli(*args):
    p = subprocess.run([sys.executable, "-m", "buddyscope", *args], cwd="/",
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       env={**os.environ})
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_cli_tui_bad_input_and_no_terminal(tmp_path):
    p = _cli("tui", str(tmp_path / "nope.json.gz"))
    assert p.returncode == 1 and p.stderr.strip().endswith("nope.json.gz: no such file")
    p = _cli("tui", str(SNAP_61), "--live")
    assert p.returncode == 1 and "give one source" in p.stderr
    p = _cli("tui", str(REC_61))
    assert p.returncode == 1 and p.stderr.strip() == (
        "buddyscope: error: the TUI needs a terminal; `buddyscope snapshot` prints the tables")


def test_goto_a_step_out_of_range_says_so_and_stays():
    async def body(app, pilot):
        total = len(app.stepper)
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*str(total + 5), "enter")
        await settle(app, pilot)
        stayed = type(app.screen).__name__
        said = str(app.screen.query_one("#goto-error").render())
        await pilot.press("escape")
        await settle(app, pilot)
        return total, stayed, said, app.step

    total, stayed, said, step = run(app_on(REC_61), body)
    assert stayed == "GotoScreen"
    assert said == f"no step {total + 5}: 0..{total}"
    assert step == 0
