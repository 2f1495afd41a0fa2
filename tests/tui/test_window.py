"""Windows of a traced source (``tui --lab``): the scorer against a real
recording cut at an arbitrary event (a recording has a snapshot only at its
start, so the first window is the one that can be checked), the running
totals' arithmetic, and the Trace tab through the pilot with a watcher that
hands out a real recording's snapshot and events as its window."""

import collections

from buddyscope.model.fixture import Fixture
from buddyscope.model.ftrace import parse_lines
from buddyscope.model.replay import AllocRecord, replay
from buddyscope.model.window import RunningScore, WindowScore, score_window
from buddyscope.tui.session import Session
from buddyscope.tui.text import running_text, window_text
from buddyscope.tui.widgets import ComparePanel, HeaderBar, LinesView, TracePanel

from tuihelp import RECORDINGS, PinnedApp, RecordingWatcher, run, screen_text, settle

REC_72 = RECORDINGS / "7.2-2cpu-fork-exec.json.gz"   # 3 misses in a full replay


def _load(path=REC_72):
    fx = Fixture.load(path)
    return fx, parse_lines(fx.trace).events


def test_first_window_is_scored_as_replay_scores_those_events():
    fx, events = _load()
    k = 5113   # arbitrary, mid-stream (mid-allocation groups too)
    w = score_window(fx.snapshot, events[:k], index=1)
    rep = replay(fx.snapshot, events[:k])
    assert w.valid and w.index == 1 and w.events == k
    assert (w.allocations, w.hits) == (rep.allocations, rep.hits)
    assert w.allocations > 1000
    assert [(r.lineno, r.predicted_pfn, r.actual_pfn, r.hit, r.reason) for r in w.records] == \
           [(r.lineno, r.predicted_pfn, r.actual_pfn, r.hit, r.reason) for r in rep.records]
    assert dict(w.reasons) == dict(rep.reasons)
    assert dict(w.counts) == dict(collections.Counter(e.name for e in events[:k]))
    assert sum(n for _, n in w.counts) == k
    assert w.misses == [r for r in w.records if not r.hit]


def test_an_invalid_window_is_not_scored():
    fx, events = _load()
    w = score_window(fx.snapshot, events[:100], 3, invalid="CPU 1 lost events (overrun 7, ...)")
    assert not w.valid and w.allocations == w.hits == 0 and w.records == ()
    assert w.events == 100 and w.accuracy is None
    text = window_text(w)
    assert "window 3: 100 events" in text and "window invalid, not scored: CPU 1 lost" in text


def test_a_window_of_another_machine_is_invalid_not_a_crash():
    fx, events = _load()
    one_cpu = Fixture.load(RECORDINGS / "7.2-1cpu-fork-exec.json.gz").snapshot
    on_cpu1 = [e for e in events if e.cpu == 1][:50]
    w = score_window(one_cpu, on_cpu1)
    assert not w.valid and "cannot be replayed" in w.invalid and "cpu 1" in w.invalid


def _rec(i, hit, reason=None):
    return AllocRecord(i, 0, 0, 0, "GFP_KERNEL", 0x1000 + i, 0x1000 + i if hit else 0x2000,
                       hit, "pcp", "pcp", reason=reason, lineno=i)


def test_running_totals_add_the_valid_windows_only():
    a = WindowScore(1, events=10, allocations=4, hits=3, records=(_rec(1, True),),
                    reasons=(("other_pcp_list", 1),))
    b = WindowScore(2, events=7, invalid="CPU 0 lost events")
    c = WindowScore(3, events=20, allocations=6, hits=4,
                    reasons=(("page_not_free_in_model", 1), ("other_pcp_list", 1)))
    d = WindowScore(4, events=0)   # nothing happened: scored, no allocations
    r = RunningScore()
    assert r.accuracy is None and r.windows == 0
    for w in (a, b, c, d):
        r = r.add(w)
    assert (r.windows, r.invalid, r.scored) == (4, 1, 3)
    assert (r.events, r.allocations, r.hits) == (30, 10, 7)
    assert r.accuracy == 0.7
    assert dict(r.reasons) == {"other_pcp_list": 2, "page_not_free_in_model": 1}
    assert r.reasons[0] == ("other_pcp_list", 2)   # most common first
    assert RunningScore().add(a) != r   # immutable: add returns a new total
    assert running_text(r) == ("running: 7/10 allocations exact (70.00 %) over 3 scored "
                               "windows, 30 events; 1 window invalid (not scored)")
    assert "3/4 allocations predicted exactly (75.00 %)" in window_text(a)
    assert "misses: 1 other_pcp_list" in window_text(a)


def test_windows_split_anywhere_add_up_when_each_starts_from_its_own_state():
    # The running total is the sum of the windows: with the model's state at
    # the split standing in for the snapshot a watcher would take there.
    from buddyscope.model.replay import Replayer
    from buddyscope.tui.views import model_snapshot

    fx, events = _load(RECORDINGS / "6.1-2cpu-fork-exec.json.gz")
    k = 3001
    first = score_window(fx.snapshot, events[:k], 1)
    r = Replayer(fx.snapshot)
    r.run(events[:k])
    second = score_window(model_snapshot(r.alloc, fx.snapshot), events[k:], 2)
    total = RunningScore().add(first).add(second)
    whole = replay(fx.snapshot, events)
    assert total.events == len(events)
    assert total.allocations == whole.allocations
    assert total.hits == whole.hits == whole.allocations


# -- the Trace tab, through the pilot ------------------------------------------------------


def test_trace_tab_shows_which_predictions_came_true():
    fx, events = _load()
    rep = replay(fx.snapshot, events)
    assert 0 < rep.allocations - rep.hits < 10
    watcher = RecordingWatcher(fx, events)

    async def body(app, pilot):
        out = {}
        panel = app.main.query_one(TracePanel)
        out["before"] = panel.status
        await pilot.press("r")
        await settle(app, pilot)
        await pilot.press("8")
        await settle(app, pilot)
        out["status1"] = panel.status
        v = panel.query_one("#trace-records", LinesView)
        out["records"] = [v._line(i) for i in range(v.count)]
        out["screen"] = screen_text(app)
        out["header"] = app.main.query_one(HeaderBar).status
        out["check"] = app.main.query_one(ComparePanel).check
        await pilot.press("r")
        await settle(app, pilot)
        out["status2"] = panel.status
        out["running"] = app.running
        return out

    app = PinnedApp(Session(watcher), interval=None)
    out = run(app, body, size=(160, 45))
    pct = f"{100.0 * rep.hits / rep.allocations:.2f} %"
    assert "waiting for the second refresh" in out["before"]
    assert watcher.refreshes == 3   # the first read, then r twice
    s1 = out["status1"]
    assert f"running: {rep.hits}/{rep.allocations} allocations exact ({pct}) over 1 scored window" in s1
    assert f"window 1: {len(events)} events" in s1
    assert f"{rep.hits}/{rep.allocations} allocations predicted exactly ({pct})" in s1
    for reason, n in rep.reasons.items():
        assert f"{n} {reason}" in s1
    # Every allocation of the window is listed; the misses are the red ones.
    recs = out["records"]
    assert len(recs) == rep.allocations
    red = [str(t) for t in recs if "red" in str(t.style)]
    assert len(red) == rep.allocations - rep.hits
    assert all("MISS" in t for t in red)
    assert f"running: {rep.hits}/{rep.allocations}" in out["screen"]
    assert str(recs[0])[:60] in out["screen"]   # the list is on screen, from its top
    assert f"exact {pct} ({rep.hits}/{rep.allocations}, 1 window)" in out["header"]
    assert f"running: {rep.hits}/{rep.allocations}" in out["check"]
    # A window that lost events: shown as invalid, the totals unchanged.
    s2 = out["status2"]
    assert "window 2: 0 events" in s2 and "window invalid, not scored: CPU 1 lost events" in s2
    assert "1 window invalid (not scored)" in s2 and "ring buffer cleared" in s2
    r = out["running"]
    assert (r.windows, r.invalid, r.allocations, r.hits) == (2, 1, rep.allocations, rep.hits)


# -- the command line -----------------------------------------------------------------------


def test_tui_lab_bad_input_is_one_line_and_boots_nothing(capsys, tmp_path, monkeypatch):
    from buddyscope import cli
    from buddyscope.lab import watch

    monkeypatch.setattr(watch.LabWatcher, "open", classmethod(
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("booted"))))
    cases = [
        (["tui", "--smp", "2"], "--smp goes with --lab"),
        (["tui", "--workload", "x.sh"], "--workload goes with --lab"),
        (["tui", "--lab", "6.1", "--qmp", "/tmp/q.sock"], "does not go with --qmp"),
        (["tui", "--lab", "6.1", str(tmp_path)], "does not go with FILE"),
        (["tui", "--lab", "6.1", "--workload", str(tmp_path / "nope.sh")],
         "nope.sh: no such workload file"),
        (["tui", "--lab", "6.1", "--interval", "-1"], "--interval must be a number of seconds"),
    ]
    for argv, want in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("buddyscope: error: ") and want in err, err


# -- what a person trying `tui --lab` in tmux ran into ------------------------------------


def test_m_walks_the_misses_of_the_window_and_a_new_window_starts_at_its_top():
    fx, events = _load()
    rep = replay(fx.snapshot, events)
    want = [i for i, r in enumerate(rep.records) if not r.hit]
    assert len(want) == rep.allocations - rep.hits >= 1

    async def body(app, pilot):
        await pilot.press("r")
        await settle(app, pilot)
        v = app.main.query_one("#trace-records", LinesView)
        seen = []
        for _ in range(len(want) + 1):
            await pilot.press("m")          # from any panel: m goes to the Trace tab
            await settle(app, pilot)
            seen.append(v.mark)
        shown = screen_text(app)
        top = (v.scroll_offset.y, v.scrollable_content_region.height)
        await pilot.press("end")
        await settle(app, pilot)
        at_end = v.scroll_offset.y
        await pilot.press("r")              # the next window: a new list
        await settle(app, pilot)
        return (seen, shown, top, v.mark, (at_end, v.scroll_offset.y),
                app.main.query_one("#tabs").active)

    watcher = RecordingWatcher(fx, events)
    watcher.results[2] = watcher.results[1]   # the next window as long as this one
    app = PinnedApp(Session(watcher), interval=None)
    seen, shown, top, mark_after, top_after, tab = run(app, body, size=(100, 30))
    assert seen == want + want[:1]          # in order, then round again
    assert tab == "trace"
    y, height = top                          # the miss marked is in view
    assert y <= want[0] < y + height and "MISS" in shown
    assert mark_after is None and top_after[0] > 0 and top_after[1] == 0


def test_p_freezes_the_trace_panel_while_the_totals_keep_counting():
    fx, events = _load()

    async def body(app, pilot):
        panel = app.main.query_one(TracePanel)
        await pilot.press("r", "8")
        await settle(app, pilot)
        first = panel.status
        header = app.main.query_one(HeaderBar).status
        await pilot.press("p", "r")         # frozen; a read ends a window anyway
        await settle(app, pilot)
        frozen = (panel.status, app.main.query_one(HeaderBar).status, app.running.windows)
        await pilot.press("p")
        await settle(app, pilot)
        return first, header, frozen, panel.status

    app = PinnedApp(Session(RecordingWatcher(fx, events)), interval=None)
    first, header, (frozen, frozen_header, counted), after = run(app, body)
    assert "window 1:" in first
    assert frozen == first and counted == 2
    assert "view frozen" in frozen_header and "1 window)" in frozen_header
    assert "window 2:" in after and "1 window invalid" in after


def test_an_idle_guest_says_why_its_windows_are_empty():
    from buddyscope.lab.watch import Refresh, Window

    fx, _ = _load()
    snap = fx.snapshot
    idle = RecordingWatcher(fx, [], workload=None)
    idle.results[1] = Refresh(snap, Window(1, snap, [], [], ""), 0.01, 0.1)

    async def body(app, pilot):
        await pilot.press("r", "8")
        await settle(app, pilot)
        return app.main.query_one(TracePanel).status

    status = run(PinnedApp(Session(idle), interval=None), body)
    assert "no allocations in this window: the guest runs no workload" in status
    assert "--workload FILE" in status and "misses in red" not in status
    busy = RecordingWatcher(fx, [], workload="fork-exec.sh")
    busy.results[1] = idle.results[1]
    status = run(PinnedApp(Session(busy), interval=None), body)
    assert "no allocations in this window" in status and "no workload" not in status


def test_q_during_a_read_quits_once_the_read_ends_and_says_so():
    import threading

    fx, events = _load()
    go = threading.Event()

    class Held(RecordingWatcher):
        def refresh(self):
            if self.refreshes:
                go.wait(30)   # a window being read off the guest
            return super().refresh()

    async def body(app, pilot):
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        held = (app.return_code, [n.message for n in app._notifications])
        go.set()
        await app.workers.wait_for_complete()
        for _ in range(20):
            if app.return_code is not None:
                break
            await pilot.pause(0.05)
        return held, app.return_code

    app = PinnedApp(Session(Held(fx, events)), interval=None)
    (code_while_reading, notes), code = run(app, body)
    assert code_while_reading is None
    assert "quitting once the read under way ends" in notes
    assert code == 0
