"""``buddyscope why`` at the command line: a verdict on a recorded state,
JSON, counts only, and bad input in one line."""

import json
import os
from pathlib import Path

import pytest

from test_cli import buddyscope

_REC = Path(__file__).resolve().parents[1] / "fixtures" / "recordings"
_SNAP = Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"


def test_why_on_a_snapshot_file_ends_with_the_sentence():
    p = buddyscope("why", f"{_SNAP}/6.12-2cpu-512m.json.gz", "--order", "3", "--gfp",
                   "GFP_KERNEL", "--cpu", "1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("kernel 6.12.118+deb13-amd64, profile 6.12: order 3 GFP_KERNEL")
    assert any("NR_FREE_PAGES" in l for l in lines)
    assert lines[-1].startswith("zone DMA32: free ") and "served by the fast path" in lines[-1]


def test_why_json():
    p = buddyscope("why", f"{_REC}/7.2-1cpu-thp.json.gz", "--order", "9", "--gfp",
                   "GFP_TRANSHUGE_LIGHT", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert (d["order"], d["migratetype"], d["verdict"]) == (9, "Movable", "served")
    assert d["attempts"][0]["flag_names"].startswith("ALLOC_WMARK_LOW")


@pytest.mark.skipif(not os.path.exists("/proc/buddyinfo"), reason="no /proc/buddyinfo here")
def test_why_procfs_says_counts_only():
    p = buddyscope("why", "--procfs", "--order", "2", "--gfp", "GFP_KERNEL")
    assert p.returncode == 0, p.stderr
    assert "note: counts only (no PFNs)" in p.stdout
    assert "guessed from what /proc/zoneinfo prints" in p.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["why", f"{_REC}/6.1-1cpu-thp.json.gz", "--order", "11", "--gfp", "GFP_KERNEL"],
         "order 11 is out of range"),
        (["why", f"{_REC}/6.1-1cpu-thp.json.gz", "--order", "2", "--gfp", "GFP_KERNEL|GFP_BOGUS"],
         "unknown GFP flag 'GFP_BOGUS'"),
        (["why", f"{_REC}/6.1-1cpu-thp.json.gz", "--order", "2", "--gfp",
          "__GFP_MOVABLE|__GFP_RECLAIMABLE"], "does not allow"),
        (["why", f"{_REC}/6.1-1cpu-thp.json.gz", "--order", "2"], "why needs --order N and --gfp"),
        (["why", f"{_REC}/6.1-1cpu-thp.json.gz", "--from-log"],
         "--from-log reads the kernel's printk buffer with drgn"),
        (["why", f"{_REC}/6.1-1cpu-thp.json.gz", "--from-log", "--order", "3"],
         "not with --order or --gfp"),
        (["why", "/nonexistent.json.gz", "--order", "2", "--gfp", "GFP_KERNEL"], "nonexistent"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_why_bad_input(args, message):
    p = buddyscope(*args)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("buddyscope: error: ") and message in last, p.stderr
