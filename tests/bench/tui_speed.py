#!/usr/bin/env python3
"""TUI speed with a big state: time to the first frame, to the first frame
with data, to a full refresh, and to open a list of 500,000 entries.

    python tests/bench/tui_speed.py [--entries 500000] [--runs 3]

THE STATE IS SYNTHETIC, for this bench only: the real 6.1 snapshot
(fixtures/snapshots/6.1-2cpu-512m.json.gz, 2 CPUs, 512 MiB) is scaled up
by tiling its DMA32 zone side by side until it spans enough pages, and
every free block of order >= 1 is listed as order-0 pages (a state no
kernel would hold: buddies that would have merged). Only the sizes are
meant to be realistic (a 4-5 GiB guest fragmented by tests/bench/fragment.c
has 450,000-600,000 free-list entries, README "Speed"). The script says so
in its output.

The app runs headless (``App.run_test``) on a source that hands out that
snapshot; each figure is the best of ``--runs``. "UI thread" is the time
the event loop spent in the message handlers that put a new state on
screen (the reads and the view computations run in thread workers).
"""

import argparse
import asyncio
import copy
import sys
import time
from pathlib import Path

from buddyscope.model.snapshot import FreeArea, Snapshot
from buddyscope.tui.app import BuddyscopeApp
from buddyscope.tui.screens import ListScreen
from buddyscope.tui.session import Session
from buddyscope.tui.widgets import FreeAreaTable, LinesView

SNAP = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots" / "6.1-2cpu-512m.json.gz"


def scaled_snapshot(entries: int) -> Snapshot:
    """See the module docstring: synthetic, for timing only."""
    snap = Snapshot.load(SNAP)
    z = next(z for z in snap.zones if z.name == "DMA32")
    k = snap.kernel
    step = 1 << (max(k.nr_page_orders - 1, k.pageblock_order))
    span = -(-z.spanned_pages // step) * step
    # Every free page of the zone, as order-0 blocks, in list order.
    pages = [[] for _ in k.migratetypes]
    for o, a in enumerate(z.free_area):
        for mt, lst in enumerate(a.free_list):
            for p in lst:
                pages[mt].extend(range(p, p + (1 << o)))
    per_tile = sum(map(len, pages))
    tiles = max(1, -(-entries // per_tile))
    lists = [[p + t * span for t in range(tiles) for p in pl] for pl in pages]
    total = sum(map(len, lists))
    if total > entries:   # trim to the asked size, from the biggest list
        big = max(range(len(lists)), key=lambda i: len(lists[i]))
        del lists[big][len(lists[big]) - (total - entries):]
    nr = sum(map(len, lists))
    areas = [FreeArea(nr, lists)] + [FreeArea(0, [[] for _ in k.migratetypes])
                                     for _ in range(1, k.nr_page_orders)]
    pbs = (z.pageblock_migratetypes or []) * tiles
    big = copy.copy(z)
    big.free_area = areas
    big.spanned_pages = span * (tiles - 1) + z.spanned_pages
    big.present_pages = z.present_pages * tiles
    big.managed_pages = z.managed_pages * tiles
    big.nr_free_pages = nr
    big.pageblock_migratetypes = pbs[: -(-big.spanned_pages // (1 << k.pageblock_order))]
    snap.zones = [big if x is z else x for x in snap.zones]
    return snap


class _Source:
    kind = "qmp"

    def __init__(self, snap):
        self.snap = snap

    def snapshot(self):
        # A new object each read, as a real source gives: the app rebuilds
        # its model for it.
        return copy.copy(self.snap)

    def close(self):
        pass


class TimedApp(BuddyscopeApp):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.ui_seconds = []
        self.shown_at = []

    def on_snapshot_ready(self, m):
        t0 = time.perf_counter()
        super().on_snapshot_ready(m)
        self.ui_seconds.append(time.perf_counter() - t0)

    def on_prediction_ready(self, m):
        t0 = time.perf_counter()
        super().on_prediction_ready(m)
        self.ui_seconds.append(time.perf_counter() - t0)
        self.shown_at.append(time.perf_counter())


async def _wait(cond, pilot, timeout=120.0):
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError
        await pilot.pause(0.005)


async def one_run(snap, size):
    app = TimedApp(Session(_Source(snap)), interval=None)
    t0 = time.perf_counter()
    async with app.run_test(size=size) as pilot:
        first_frame = time.perf_counter() - t0
        await _wait(lambda: app.shown_at, pilot)
        first_data = app.shown_at[0] - t0
        ui_first = sum(app.ui_seconds)
        app.ui_seconds.clear()
        t1 = time.perf_counter()
        await pilot.press("r")
        await _wait(lambda: len(app.shown_at) >= 2, pilot)
        refresh = app.shown_at[1] - t1
        ui_refresh = sum(app.ui_seconds)
        t2 = time.perf_counter()
        table = app.main.query_one(FreeAreaTable)
        table.focus()
        table.move_cursor(row=0, column=2)   # order 0, Movable: the big list
        await pilot.press("enter")
        await _wait(lambda: isinstance(app.screen, ListScreen), pilot)
        await pilot.pause()
        open_list = time.perf_counter() - t2
        count = app.screen.query_one(LinesView).count
        t3 = time.perf_counter()
        app.screen.query_one(LinesView).scroll_end(animate=False)
        await pilot.pause()
        to_end = time.perf_counter() - t3
    return dict(first_frame=first_frame, first_data=first_data, ui_first=ui_first,
                refresh=refresh, ui_refresh=ui_refresh, open_list=open_list, to_end=to_end,
                list_entries=count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="200x50")
    a = ap.parse_args()
    size = tuple(int(x) for x in a.size.split("x"))
    t0 = time.perf_counter()
    snap = scaled_snapshot(a.entries)
    n = sum(len(lst) for z in snap.zones for ar in z.free_area for lst in ar.free_list)
    print(f"SYNTHETIC STATE: {SNAP.name} scaled to {n:,} free-list entries "
          f"(DMA32 tiled, free blocks listed as order-0 pages; built in "
          f"{time.perf_counter() - t0:.1f} s). Not a kernel's state: sizes only.")
    best = {}
    for _ in range(a.runs):
        r = asyncio.run(one_run(snap, size))
        for k, v in r.items():
            best[k] = min(best.get(k, v), v)
    print(f"terminal {size[0]}x{size[1]}, best of {a.runs}:")
    print(f"  first frame (header, tabs, no data yet)   {best['first_frame']:.3f} s")
    print(f"  first frame with data and prediction      {best['first_data']:.3f} s"
          f"   (UI thread {best['ui_first']:.3f} s)")
    print(f"  full refresh (read, views, prediction)    {best['refresh']:.3f} s"
          f"   (UI thread {best['ui_refresh']:.3f} s)")
    print(f"  open the {best['list_entries']:,}-entry list                {best['open_list']:.3f} s")
    print(f"  scroll it to the end                      {best['to_end']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
