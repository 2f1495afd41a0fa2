"""Hostile inputs through the CLI, as a user (or an attacker) would hand
them: each run as a subprocess with a time limit and an address-space limit,
and each must end in one line on stderr (or a normal report), never a
traceback, a hang or a memory blow-up. Also: a long replay survives bad
lines (counted, reported with their line numbers), ``--strict`` stops at
the first; a full disk while writing gives one line."""

import copy
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REC = ROOT / "fixtures" / "recordings"
SNAP = ROOT / "fixtures" / "snapshots" / "6.12-2cpu-512m.json.gz"
# Address space for one CLI run: Python with the model imported needs about
# 100 MiB; a file read whole (10 GB) would not fit.
MEMORY = 768 * 2**20


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def cli(*args, timeout=60):
    p = subprocess.run([sys.executable, "-m", "buddyscope", *map(str, args)], cwd="/",
                       capture_output=True, text=True, timeout=timeout, preexec_fn=_limit)
    assert "Traceback" not in p.stderr, p.stderr
    assert "MemoryError" not in p.stderr, p.stderr
    return p


def one_line_error(p, *words):
    assert p.returncode == 1, (p.returncode, p.stdout[-500:], p.stderr)
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("buddyscope: error: "), p.stderr
    for w in words:
        assert w in err[0], err[0]
    return err[0]


def snapshot_dict():
    with gzip.open(SNAP) as f:
        return json.load(f)


def write(path, d):
    path.write_text(json.dumps(d))
    return path


# -- hostile snapshots ---------------------------------------------------------

def test_a_snapshot_claiming_2_to_the_40_pfns_costs_nothing_more(tmp_path):
    """spanned_pages of 2^40 (4 PiB of RAM): nothing in buddyscope is
    proportional to the span, so it is read, shown and modelled as usual."""
    d = snapshot_dict()
    d["zones"][-1]["spanned_pages"] = 2**40
    f = write(tmp_path / "big.json", d)
    p = cli("snapshot", f)
    assert p.returncode == 0, p.stderr
    assert f"spanned {2**40}" in p.stdout
    p = cli("predict", f, "--order", "0", "--migratetype", "Movable")
    assert p.returncode == 0, p.stderr


def test_a_snapshot_claiming_more_pfns_than_any_machine_is_refused(tmp_path):
    d = snapshot_dict()
    d["zones"][-1]["spanned_pages"] = 2**60
    one_line_error(cli("snapshot", write(tmp_path / "huge.json", d)),
                   "corrupt buddyscope snapshot", "spanned_pages")


def _first_list(d, zone=-1):
    for o, a in enumerate(d["zones"][zone]["free_area"]):
        for mt, l in enumerate(a["free_list"]):
            if len(l) >= 2:
                return o, mt, l
    raise AssertionError("no free list of two blocks")


def test_a_list_with_a_cycle_is_read_once(tmp_path):
    """A list walked round a cycle, as JSON can hold one: the same PFN again
    after the head. The model keeps the first (a probe anomaly)."""
    d = snapshot_dict()
    o, mt, l = _first_list(d)
    l.extend(l * 1000)  # round the cycle a thousand times
    f = write(tmp_path / "cycle.json", d)
    for args in (["snapshot", f, "--lists"],
                 ["predict", f, "--order", str(o), "--migratetype", "Movable", "-n", "5"]):
        p = cli(*args)
        assert p.returncode == 0, p.stderr


def test_a_pfn_in_two_lists(tmp_path):
    d = snapshot_dict()
    o, mt, l = _first_list(d)
    other = d["zones"][-1]["free_area"][o]["free_list"][(mt + 1) % len(d["kernel"]["migratetypes"])]
    other.append(l[0])
    p = cli("predict", write(tmp_path / "twice.json", d), "--order", str(o),
            "--migratetype", "Movable", "-n", "5", "--json")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["results"]) == 5


@pytest.mark.parametrize("where, value, field", [
    (("zones", 0, "free_area", 3, "nr_free"), -5, "nr_free"),
    (("zones", 0, "pcp", 0, "count"), -1, "count"),
    (("zones", 0, "managed_pages"), -2**63, "managed_pages"),
    (("kernel", "nr_cpus"), 0, "nr_cpus"),
    (("kernel", "nr_page_orders"), 2**31, "nr_page_orders"),
    (("zones", 0, "pcp", 0, "cpu"), 99, "cpu"),
    (("zones", 0, "start_pfn"), "0x1000", "start_pfn"),
])
def test_negative_or_impossible_counts_are_refused(tmp_path, where, value, field):
    d = snapshot_dict()
    obj = d
    for k in where[:-1]:
        obj = obj[k]
    obj[where[-1]] = value
    f = write(tmp_path / "bad.json", d)
    for cmd in ("snapshot", "predict"):
        extra = ["--order", "0", "--migratetype", "Movable"] if cmd == "predict" else []
        one_line_error(cli(cmd, f, *extra), "corrupt buddyscope snapshot", field)


def test_deeply_nested_json(tmp_path):
    f = tmp_path / "deep.json"
    f.write_text("[" * 200000 + "]" * 200000)
    one_line_error(cli("snapshot", f), "nested too deeply")
    one_line_error(cli("replay", f), "nested too deeply")


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    f = tmp_path / "bomb.json.gz"
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * 2**20
    with open(f, "wb") as out:
        for _ in range(300):  # 300 MiB of spaces in about 1 MiB
            out.write(c.compress(block))
        out.write(c.flush())
    assert f.stat().st_size < 8 * 2**20
    one_line_error(cli("snapshot", f), "more than 256 MiB")


# -- a 10 GB file ----------------------------------------------------------------

@pytest.fixture
def ten_gb(tmp_path):
    """A sparse 10 GB file: no disk used, and a reader that reads it whole
    runs out of its address space (or of time)."""
    f = tmp_path / "ten.gb"
    with open(f, "wb") as out:
        out.truncate(10 * 10**9)
    return f


def test_a_10_gb_trace_is_refused_quickly(ten_gb):
    one_line_error(cli("replay", "--snapshot", SNAP, "--trace", ten_gb, timeout=30),
                   "not ftrace text")


def test_a_10_gb_trace_after_good_lines(tmp_path):
    """Real events, then 10 GB of nothing: the events are not lost in a
    read of the whole hole; the hole is refused as a line too long."""
    with gzip.open(REC / "6.12-2cpu-thp.json.gz") as f:
        fx = json.load(f)
    t = tmp_path / "trace.txt"
    t.write_text("\n".join(fx["trace"][:100]) + "\n")
    with open(t, "r+b") as out:
        out.truncate(10 * 10**9)
    one_line_error(cli("replay", "--snapshot", SNAP, "--trace", t, timeout=30),
                   "line 101", "not ftrace text")


@pytest.mark.parametrize("cmd", [["snapshot"], ["replay"], ["predict", "--order", "0",
                                                             "--migratetype", "Movable"]])
def test_a_10_gb_snapshot_or_fixture_is_refused_quickly(ten_gb, cmd):
    p = cli(cmd[0], ten_gb, *cmd[1:], timeout=30)
    one_line_error(p, "more than 256 MiB")


# -- a long replay survives bad lines ----------------------------------------------

@pytest.fixture(scope="module")
def broken_trace(tmp_path_factory):
    """A real recording's trace with three bad lines: unreadable fields, a
    PFN in no zone, a CPU the snapshot does not have."""
    d = tmp_path_factory.mktemp("broken")
    with gzip.open(REC / "6.1-1cpu-thp.json.gz") as f:
        fx = json.load(f)
    t = list(fx["trace"])
    frees = [i for i, l in enumerate(t) if "mm_page_free:" in l]
    a, b, c = frees[5], frees[10], frees[15]
    t[a] = t[a].replace(" order=", " order=x")
    t[b] = t[b].split("pfn=")[0] + "pfn=0x7fffffffffff order=0"
    t[c] = t[c].replace("[000]", "[099]")
    snap = write(d / "snap.json", fx["snapshot"])
    trace = d / "trace.txt"
    trace.write_text("\n".join(t) + "\n")
    good = d / "good.txt"
    good.write_text("\n".join(fx["trace"]) + "\n")
    return snap, trace, good, (a + 1, b + 1, c + 1)


def test_replay_counts_bad_lines_and_goes_on(broken_trace):
    snap, trace, good, lines = broken_trace
    p = cli("replay", "--snapshot", snap, "--trace", trace, "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["skipped"] == 3
    assert [s["line"] for s in d["skipped_lines"]] == list(lines)
    assert "fields are not" in d["skipped_lines"][0]["why"]
    assert "in no zone" in d["skipped_lines"][1]["why"]
    assert "cpu 99" in d["skipped_lines"][2]["why"]
    # The rest was replayed: the same allocations as the good trace.
    g = json.loads(cli("replay", "--snapshot", snap, "--trace", good, "--json").stdout)
    assert g["skipped"] == 0 and d["allocations"] == g["allocations"] > 100
    p = cli("replay", "--snapshot", snap, "--trace", trace)
    assert p.returncode == 0, p.stderr
    assert "skipped lines          3" in p.stdout
    for n in lines:
        assert f"  line {n}: " in p.stdout


def test_replay_strict_stops_at_the_first_bad_line(broken_trace):
    snap, trace, _, lines = broken_trace
    one_line_error(cli("replay", "--snapshot", snap, "--trace", trace, "--strict"),
                   f"line {lines[0]}:", "fields are not")


def test_a_trace_of_nothing_but_bad_lines_is_refused(tmp_path):
    t = tmp_path / "bad.txt"
    t.write_text("  bash-1 [000] ..... 5: mm_page_free: page=x pfn=zz order=q\n" * 1000)
    one_line_error(cli("replay", "--snapshot", SNAP, "--trace", t),
                   "none of its 1000 kmem page event lines can be read")


def test_a_directory_as_a_trace(tmp_path):
    one_line_error(cli("replay", "--snapshot", SNAP, "--trace", tmp_path), "cannot read")


# -- disk full -----------------------------------------------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs of 8 KiB, mounted for the test (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_while_writing_a_snapshot_is_one_line(full_disk):
    out = full_disk / "snap.json"
    one_line_error(cli("snapshot", SNAP, "-o", out), "cannot write", "No space left")


def test_disk_full_leaves_the_good_file_there_was(full_disk):
    out = full_disk / "snap.json"
    out.write_text("good\n")
    cli("snapshot", SNAP, "-o", out)
    assert out.read_text() == "good\n"
    assert [p.name for p in full_disk.iterdir()] == ["snap.json"]
