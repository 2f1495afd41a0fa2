"""The TUI from the keyboard alone, at 80x24, as issue 15 asks: focus lands
on the panel's main widget after every tab switch and every overlay, number
keys always switch panels (outside a text field), Escape goes back, the
help scrolls to its last line, the footer says what the focused widget
takes; Find, list search, Zones, History, screenshot and export; the labels
a kernel developer reads. Expected numbers come from the raw JSON."""

import gzip
import json
import re

import pytest

from textual.widgets import Input, Select

from buddyscope.model.snapshot import Snapshot
from buddyscope.probe.sources import SourceSpec
from buddyscope.tui.app import MAIN_WIDGET, PANELS
from buddyscope.tui.screens import HelpScreen, ListScreen
from buddyscope.wiring import open_session
from buddyscope.tui.widgets import LinesView

from tuihelp import REC_61, REPO, SNAP_61, SNAP_72, PinnedApp, app_on, fake_app, raw, run, \
    screen_text, settle

SMALL = (80, 24)
PROCFS_72 = REPO / "fixtures" / "procfs" / "7.2"


def procfs_app(**kw):
    return PinnedApp(open_session(SourceSpec(procfs=True, procfs_root=str(PROCFS_72))), **kw)


def _present(app):
    return [(t, k) for t, _, k in PANELS if app.main.query(f"TabPane#{t}")]


def _focus_ok(app, tab):
    """The focused widget is the panel's main widget (or nothing when that
    widget is hidden: the PCP lists of a counts-only source; in Find, the
    answer after Esc left the field)."""
    if tab == "find" and app.focused is app.main.query_one("#find-result"):
        return True
    want = app.main.query(MAIN_WIDGET[tab])
    w = want.first() if want else None
    if w is not None and not w.display:
        # Hidden (a counts-only source's PCP lists): focus stays in the panel.
        pane = app.main.query_one(f"TabPane#{tab}")
        return app.focused is not None and pane in app.focused.ancestors
    return app.focused is w


async def _tab(app):
    return app.main.query_one("#tabs").active


# One test per source: pytest-xdist spreads them over its workers.
@pytest.mark.parametrize("make", [lambda: app_on(SNAP_72), lambda: app_on(REC_61),
                                  lambda: procfs_app(interval=None)],
                         ids=["snapshot", "recording", "procfs"])
def test_every_number_key_switches_and_focuses_from_every_panel(make):
    """Each digit, from each panel's main widget (the Find field left with
    Esc), switches to its panel and focuses the panel's main widget: the
    panels in order, in reverse, and back to 1 from each."""
    async def body(app, pilot):
        seen = []
        present = _present(app)
        order = present + present[::-1] + [p for q in present for p in (q, present[0])]
        prev = None
        for dst, key in order:
            if isinstance(app.focused, Input):
                await pilot.press("escape")   # out of the Find field first
            await pilot.press(key)
            await pilot.pause()
            seen.append((prev, dst, await _tab(app), _focus_ok(app, dst)))
            prev = dst
        return present, seen

    present, seen = run(make(), body, size=SMALL)
    assert len(present) >= 8
    assert [(s, d, got) for s, d, got, ok in seen if got != d or not ok] == []


def test_digits_from_the_predict_button_switch_and_digits_in_a_field_are_typed():
    async def body(app, pilot):
        await pilot.press("5")
        await settle(app, pilot)
        app.main.query_one("#predict-go").focus()
        await settle(app, pilot)
        await pilot.pause(0.1)   # the button's focus message handled
        await pilot.press("3")
        await settle(app, pilot)
        out = [await _tab(app), app.main.query_one("#predict-order", Input).value]
        await pilot.press("5", "o")          # o: edit the request
        await settle(app, pilot)
        order = app.main.query_one("#predict-order", Input)
        out.append(app.focused is order)
        await pilot.press("end", "3")          # typed, not a tab switch
        await settle(app, pilot)
        out += [await _tab(app), order.value]
        await pilot.press("escape", "1")       # Esc leaves the field; 1 switches again
        await settle(app, pilot)
        out += [await _tab(app), _focus_ok(app, "free")]
        return out

    assert run(app_on(SNAP_72), body, size=SMALL) == [
        "marks", "0", True, "predict", "03", "free", True]


def test_overlays_close_back_onto_the_same_panel_with_its_focus():
    async def body(app, pilot):
        out = []
        for tab, key in _present(app):
            overlays = [("question_mark",), ("ctrl+p",)]
            if tab in ("replay", "predict"):
                overlays.append(("g",))   # go to a step
            for overlay in overlays:
                await pilot.press(key)
                await pilot.pause()
                if tab == "find":
                    await pilot.press("escape")
                await pilot.press(*overlay)
                await settle(app, pilot)
                opened = app.screen is not app.main
                await pilot.press("escape")
                await settle(app, pilot)
                out.append((tab, overlay[0], opened, app.screen is app.main,
                            await _tab(app), _focus_ok(app, tab)))
        return out

    rows = run(app_on(REC_61), body, size=SMALL)
    assert len(rows) >= 20
    assert [r for r in rows if r[1:4] != (r[1], True, True) or r[4] != r[0] or not r[5]] == []


def test_a_list_opened_from_a_panel_closes_back_onto_it():
    async def body(app, pilot):
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("enter")     # the first pcp list
        await settle(app, pilot)
        opened = isinstance(app.screen, ListScreen)
        await pilot.press("escape")
        await settle(app, pilot)
        return opened, await _tab(app), _focus_ok(app, "pcp")

    assert run(app_on(SNAP_72), body, size=SMALL) == (True, "pcp", True)


def test_help_scrolls_to_its_last_line_at_80x24():
    async def body(app, pilot):
        await pilot.press("question_mark")
        await settle(app, pilot)
        top = screen_text(app)
        await pilot.press("end")
        await settle(app, pilot)
        bottom = screen_text(app)
        is_help = isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await settle(app, pilot)
        return top, bottom, is_help, app.screen is app.main

    top, bottom, is_help, back = run(app_on(SNAP_72), body, size=SMALL)
    assert is_help and back
    assert "End of help. Esc closes." not in top and "Panels" in top
    assert "End of help. Esc closes." in bottom and "Trace (tui --lab" in bottom


def _footer(text):
    return text.rstrip("\n").splitlines()[-1]


def test_the_footer_says_what_the_focused_widget_takes_in_whole_words():
    async def body(app, pilot):
        out = {}
        for key in ("1", "2", "5", "0"):
            await pilot.press(key)
            await settle(app, pilot)
            out[key] = _footer(screen_text(app))
        return out

    foot = run(app_on(SNAP_72), body, size=SMALL)
    assert "Open list" in foot["1"] and "Open list" in foot["2"]
    assert "Edit request" in foot["5"] and "Open list" not in foot["5"]
    # A file never changes: no refresh keys.
    assert all("Refresh" not in f and "Pause" not in f for f in foot.values())
    rfoot = run(app_on(REC_61), _footer_now, size=SMALL)
    # Every binding the replay footer shows is whole, "palette" last.
    for word in ("Quit", "Help", "Step", "Back", "Alloc", "Miss", "Find", "palette"):
        assert re.search(rf"\b{word}\b", rfoot), (word, rfoot)


async def _footer_now(app, pilot):
    await pilot.press("7")
    await settle(app, pilot)
    await pilot.pause(0.2)    # the footer painted
    return _footer(screen_text(app))


def test_find_a_free_page_a_pcp_page_and_open_its_list_at_the_entry():
    d = raw(SNAP_72)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")
    lst = dma32["free_area"][3]["free_list"][0]
    head = lst[5]
    pcp_list = dma32["pcp"][1]["lists"][0]

    async def body(app, pilot):
        await pilot.press("f")
        await settle(app, pilot)
        in_field = isinstance(app.focused, Input)
        await pilot.press(*hex(head + 3), "enter")
        await settle(app, pilot)
        text = screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        screen = app.screen
        v = screen.query_one(LinesView)
        marked = v.mark
        title = str(screen.query_one("#list-title").render())
        # Search within the open list: the block holding a tail page.
        await pilot.press("slash", *hex(lst[-1] + 7), "enter")
        await settle(app, pilot)
        found = v.mark, str(screen.query_one("#list-found").render())
        await pilot.press("escape")
        await settle(app, pilot)
        back = await _tab(app), app.screen is app.main
        await pilot.press("escape")    # from the result to the field
        await pilot.press("ctrl+a", "ctrl+k", *hex(pcp_list[2]), "enter")
        await settle(app, pilot)
        return in_field, text, marked, title, found, back, screen_text(app)

    in_field, text, marked, title, found, back, pcp_text = run(app_on(SNAP_72), body,
                                                               size=SMALL)
    assert in_field
    assert "free_area[3].free_list[Unmovable]" in text
    assert f"entry 5 of {len(lst)}" in text and "+3 in it" in text
    assert marked == 5 and "free_list[Unmovable]" in title
    assert found[0] == len(lst) - 1 and f"the block at {lst[-1]:#x} holds it" in found[1]
    assert back == ("find", True)
    assert "cpu 1 pcp lists[0]" in pcp_text and f"entry 2 of {len(pcp_list)}" in pcp_text


def test_find_says_why_not_in_one_line():
    async def body(app, pilot):
        await pilot.press("0")
        await settle(app, pilot)
        await pilot.press(*"ffffea0000048d00", "enter")
        await settle(app, pilot)
        return screen_text(app)

    def words(text):
        return " ".join(text.split())

    assert "does not record vmemmap: give a PFN" in words(run(app_on(SNAP_72), body, size=SMALL))
    assert "counts only (procfs)" in words(run(procfs_app(interval=None), body, size=SMALL))


def test_zones_panel_is_buddyinfo_for_every_zone():
    d = raw(SNAP_72)

    async def body(app, pilot):
        await pilot.press("9")
        await settle(app, pilot)
        return screen_text(app)

    text = run(app_on(SNAP_72), body, size=SMALL)
    for z in d["zones"]:
        row = next(line for line in text.splitlines()
                   if line.strip().startswith(f"{z['node']}/{z['name']} "))
        assert row.split()[1:] == [str(a["nr_free"]) for a in z["free_area"]]


def test_history_of_a_source_read_again_and_again_and_the_pause_freezes_it():
    snaps = [Snapshot.load(p) for p in (SNAP_61, SNAP_72, SNAP_61)]
    frees = [next(z for z in raw(p)["zones"] if z["name"] == "DMA32")["nr_free_pages"]
             for p in (SNAP_61, SNAP_72, SNAP_61)]

    async def body(app, pilot):
        for _ in range(2):
            await pilot.press("r")
            await settle(app, pilot)
        await pilot.press("7")
        await settle(app, pilot)
        panel = app.main.query_one("#history-panel")
        text = screen_text(app)
        samples = [s.free_pages for s in panel.samples]
        await pilot.press("p", "r")
        await settle(app, pilot)
        frozen = [s.free_pages for s in app.main.query_one("#history-panel").samples]
        return text, samples, frozen, app.session.source.reads

    text, samples, frozen, reads = run(fake_app("qmp", *snaps), body, size=SMALL)
    assert samples == frees
    assert re.search(rf"free\s+[▁-█]{{3}}\s+{frees[-1]}\b", text), text
    assert "order 0" in text and "crossing the watermarks" in text
    assert frozen == frees and reads == 4   # read, not shown: the view is frozen


def test_screenshot_and_export_land_whole_where_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("BUDDYSCOPE_EXPORT_DIR", str(tmp_path))

    async def body(app, pilot):
        await pilot.press("s", "e")
        await settle(app, pilot)
        return app.main.snapshot

    shown = run(app_on(REC_61), body, size=SMALL)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and not any(f.startswith(".") for f in files), files
    svg = next(tmp_path.glob("*.svg")).read_text()
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    exported = next(tmp_path.glob("*.json.gz"))
    # Written in the newest snapshot format (packed lists): compared as loaded.
    assert json.loads(gzip.decompress(exported.read_bytes()))["format"] == 2
    assert {**Snapshot.load(exported).to_dict(), "format": shown.format} == shown.to_dict()


def test_labels_a_kernel_developer_reads():
    d72 = raw(SNAP_72)

    async def text_of(app, pilot, *keys):
        for k in keys:
            await pilot.press(k)
            await settle(app, pilot)
        return screen_text(app)

    async def file_body(app, pilot):
        return await text_of(app, pilot), await text_of(app, pilot, "3")

    free, marks = run(app_on(SNAP_72), file_body, size=SMALL)
    # A file shows when it was captured, and never "paused" for its state.
    assert f"captured {d72['capture']['time'].replace('T', ' ')}" in free
    assert "kernel stopped while read: consistent" in free and "paused" not in free
    assert all(z["watermark_boost"] == 0 for z in d72["zones"])
    assert "+boost" not in marks and "watermark_boost 0" in marks

    async def procfs_body(app, pilot):
        return (await text_of(app, pilot), await text_of(app, pilot, "2"),
                await text_of(app, pilot, "4"))

    free, pcp, blocks = run(procfs_app(interval=None), procfs_body, size=(120, 30))
    assert "read while running" in free and "root, /proc/kcore" in free
    assert "no pcp lists" in pcp
    pti = (PROCFS_72 / "pagetypeinfo").read_text()
    row = re.search(r"Number of blocks type\s+(.*)\n(?:.*\n)*?Node\s+0, zone\s+DMA32\s+(.*)", pti)
    names, counts = row.group(1).split(), row.group(2).split()
    assert "/proc/pagetypeinfo" in blocks
    for n, c in zip(names, counts):
        assert f"{n} {c}" in blocks


def test_one_entry_and_no_stale_prediction_under_an_error():
    d = raw(SNAP_72)
    dma32 = next(z for z in d["zones"] if z["name"] == "DMA32")
    assert len(dma32["free_area"][0]["free_list"][1]) == 1   # order 0 Movable

    async def body(app, pilot):
        t = app.main.query_one("#free-area")
        t.move_cursor(row=0, column=2)
        await pilot.press("enter")
        await settle(app, pilot)
        title = str(app.screen.query_one("#list-title").render())
        await pilot.press("escape", "5")
        await settle(app, pilot)
        before = app.main.query_one("#predict-results").row_count
        app.main.query_one("#predict-order", Input).value = "x"
        app.main.query_one("#predict-panel").submit()
        await settle(app, pilot)
        return title, before, app.main.query_one("#predict-results").row_count, \
            screen_text(app)

    title, before, after, text = run(app_on(SNAP_72), body, size=SMALL)
    assert "1 entry," in title
    assert before == 8 and after == 0 and "order: not a number" in text


def test_the_zone_label_follows_z_at_once():
    async def body(app, pilot):
        sel = app.main.query_one("#zone-select", Select)
        out = []
        for _ in range(3):
            await pilot.press("z")
            out.append((app.main.zone, sel.value))
        return out

    assert all(z == v for z, v in run(app_on(SNAP_72), body, size=SMALL))
