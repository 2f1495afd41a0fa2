"""Bad input at the command line: one clear line on stderr, a non-zero exit,
never a traceback. Run as a subprocess, as a user would."""

import os
import subprocess
import sys

import pytest


def buddyscope(*args, env=None):
    e = {**os.environ, **(env or {})}
    # Run outside the checkout so that the installed package is what runs.
    p = subprocess.run([sys.executable, "-m", "buddyscope", *args], cwd="/",
                       capture_output=True, text=True, env=e, timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture
def empty_cache(tmp_path):
    return {"BUDDYSCOPE_CACHE": str(tmp_path / "cache")}


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["lab", "fetch", "9.9"], 1, "unknown series '9.9'"),
        (["lab", "fetch", "jammy"], 1, "unknown series 'jammy'"),
        (["lab", "shell", "6.1", "--smp", "0"], 2, "not a positive count: '0'"),
        (["lab", "shell", "6.1", "--mem", "lots"], 2, "not a memory size: 'lots'"),
        (["lab", "shell", "6.1"], 1, "no lab kernel for 6.1 in the cache"),
        (["lab", "shell", "4.4"], 1, "unknown series '4.4'"),
        (["lab"], 2, "required: lab_command"),
        (["record", "--lab", "9.9", "--workload", "w.sh", "-o", "f.json.gz"], 1, "unknown series '9.9'"),
        (["record", "--lab", "6.1", "--workload", "w.sh", "-o", "f.json.gz"], 1, "no lab kernel for 6.1"),
        (["record", "--lab", "6.1", "-o", "f.json.gz"], 1, "--lab needs --workload FILE"),
        (["record", "-o", "f.json.gz"], 2, "one of the arguments --lab --live --restore is required"),
        (["record", "--live", "--", "true"], 1, "record needs -o FIXTURE"),
        (["record", "--restore", "-o", "f.json.gz"], 1, "--restore takes no -o, --workload or command"),
        (["record", "--lab", "6.1", "--live", "-o", "f.json.gz"], 2, "not allowed with argument"),
        (["record", "--lab", "6.1", "--workload", "w.sh", "-o", "f.json.gz", "--", "ls"], 1,
         "a command after -- is for --live"),
        (["record", "--live", "-o", "f.json.gz"], 1, "record --live needs a command to run"),
        (["record", "--live", "--workload", "w.sh", "-o", "f.json.gz", "--", "ls"], 1,
         "--workload is for --lab"),
        (["nonsense"], 2, "invalid choice"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_arguments(args, status, message, empty_cache):
    p = buddyscope(*args, env=empty_cache)
    assert p.returncode == status
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("buddyscope: error: ")
    assert message in last


@pytest.mark.skipif(os.path.exists("/proc/kcore"), reason="this machine has /proc/kcore")
def test_record_live_without_kcore_is_one_line_and_leaves_tracing_alone(tmp_path):
    tracefs = next((t for t in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
                    if os.path.exists(f"{t}/events/kmem")), None)
    before = _tracing_files(tracefs)
    p = buddyscope("record", "--live", "-o", str(tmp_path / "f.json.gz"), "--", "true")
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    if os.geteuid() != 0:
        assert last == "buddyscope: error: recording the live kernel needs root (tracefs and /proc/kcore)"
    elif tracefs is None:
        assert last.startswith("buddyscope: error: no tracefs with kmem events here")
    else:
        assert last == "buddyscope: error: this kernel has no /proc/kcore: try --procfs for counts"
    assert _tracing_files(tracefs) == before


def _tracing_files(tracefs):
    if tracefs is None:
        return None
    out = {}
    for name in ("tracing_on", "trace_clock", "buffer_size_kb", "current_tracer",
                 "events/kmem/mm_page_alloc/enable"):
        with open(f"{tracefs}/{name}") as f:
            out[name] = f.read()
    return out


def test_lab_list_on_an_empty_cache(empty_cache):
    p = buddyscope("lab", "list", env=empty_cache)
    assert p.returncode == 0
    assert "no kernels cached" in p.stdout and "buddyscope lab fetch" in p.stdout


@pytest.mark.skipif(os.path.exists("/proc/kcore"), reason="this machine has /proc/kcore")
def test_no_arguments_shows_the_best_source_here():
    # This machine has no /proc/kcore: procfs counts are the best source.
    p = buddyscope()
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("buddyscope: showing procfs counts (no PFNs: ")
    with open("/proc/sys/kernel/osrelease") as f:
        assert f"\n{f.read().strip()}  procfs /proc" in p.stdout


def test_without_proc_the_bundled_snapshot_is_the_source():
    from buddyscope.model.snapshot import Snapshot
    from buddyscope.probe.sources import best_source_spec, open_source

    spec, why = best_source_spec(procfs_root=__import__("pathlib").Path("/nonexistent"))
    assert why.startswith("a bundled recorded snapshot") and spec.file.name == "6.1-2cpu-512m.json.gz"
    with open_source(spec) as src:
        snap = src.snapshot()
    assert snap.kernel.release == "6.1.0-56-amd64" and snap.capture.consistent
    assert snap.to_dict() == Snapshot.load(spec.file).to_dict()


def test_version():
    p = buddyscope("--version")
    assert p.returncode == 0 and p.stdout.startswith("buddyscope ")


def test_unreachable_archive(empty_cache, tmp_path):
    import shutil
    if not shutil.which("apt-get"):
        pytest.skip("needs Debian's apt-get")
    from buddyscope.lab.apt import host_codename
    etc = tmp_path / "etc-apt"
    etc.mkdir()
    # Port 9 on loopback: nothing listens there.
    (etc / "sources.list").write_text(f"deb http://127.0.0.1:9/debian {host_codename()} main\n")
    p = buddyscope("lab", "fetch", "6.1",
                   env={**empty_cache, "BUDDYSCOPE_ETC_APT": str(etc)})
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("buddyscope: error: archive cannot be reached: Err:")


FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "fixtures", "snapshots", "7.2-2cpu-512m.json.gz")


def test_snapshot_of_a_fixture_prints_its_tables():
    p = buddyscope("snapshot", FIXTURE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("7.2.13+deb14-amd64  qmp ")
    assert "paused, consistent" in p.stdout
    assert "  CMA " in p.stdout and "zone DMA32" in p.stdout


def test_snapshot_json_and_output_round_trip(tmp_path):
    import json

    from buddyscope.model.snapshot import FORMAT, Snapshot

    p = buddyscope("snapshot", FIXTURE, "--json")
    assert p.returncode == 0
    assert json.loads(p.stdout) == Snapshot.load(FIXTURE).to_dict()
    out = tmp_path / "copy.json.gz"
    p = buddyscope("snapshot", FIXTURE, "-o", str(out))
    assert p.returncode == 0 and "wrote" in p.stderr
    # Written in the newest format (packed lists), read back the same.
    again, ref = Snapshot.load(out).to_dict(), Snapshot.load(FIXTURE).to_dict()
    assert again.pop("format") == FORMAT and ref.pop("format") == 1
    assert again == ref
    p = buddyscope("snapshot", str(out), "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == {"format": FORMAT, **ref}


@pytest.mark.parametrize(
    "args, message",
    [
        (["snapshot"], "no source: give --live"),
        (["snapshot", FIXTURE, "--procfs"], "give one source, not FILE and --procfs"),
        (["snapshot", "--procfs", "--pause", "/tmp/x"], "--pause goes with --qmp"),
        (["snapshot", "--qmp", "/nonexistent.sock"], "no QMP socket at /nonexistent.sock"),
        (["snapshot", "--vmcore", "/etc/hostname"], "is not a vmcore"),
        (["snapshot", "--vmcore", "/nonexistent"], "no such vmcore"),
        (["snapshot", "/etc/hostname"], "not a buddyscope snapshot"),
        (["snapshot", "--qmp", "/etc/hostname"], "/etc/hostname is not a socket"),
        (["snapshot", "/nonexistent.json.gz"], "cannot read /nonexistent.json.gz"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_snapshot_bad_input(args, message):
    p = buddyscope(*args)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("buddyscope: error: ")
    assert message in p.stderr


@pytest.mark.skipif(os.path.exists("/proc/kcore"), reason="this machine has /proc/kcore")
def test_live_without_kcore():
    p = buddyscope("snapshot", "--live")
    assert p.returncode == 1
    assert "no /proc/kcore" in p.stderr or "needs root" in p.stderr


def test_procfs_on_this_machine():
    p = buddyscope("snapshot", "--procfs")
    assert p.returncode == 0, p.stderr
    with open("/proc/sys/kernel/osrelease") as f:
        assert p.stdout.startswith(f.read().strip() + "  procfs /proc")


_REC = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "recordings")


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "/nonexistent.json.gz"], "/nonexistent.json.gz: no such file"),
        (["replay"], "replay needs a fixture"),
        (["predict", f"{_REC}/7.2-1cpu-thp.json.gz", "--order", "11", "--migratetype", "movable"],
         "order 11 is out of range"),
        (["predict", f"{_REC}/7.2-1cpu-thp.json.gz", "--order", "0", "--gfp", "GFP_KERNEL|__GFP_FOO"],
         "unknown GFP flag '__GFP_FOO'"),
        (["predict", f"{_REC}/7.2-1cpu-thp.json.gz", "--order", "0", "--migratetype", "sticky"],
         "unknown migratetype 'sticky'"),
        (["predict", f"{_REC}/7.2-1cpu-thp.json.gz", "--order", "0", "--migratetype", "movable",
          "--cpu", "3"], "cpu 3 does not exist"),
        (["predict", f"{_REC}/7.2-1cpu-thp.json.gz", "--order", "0", "--gfp", "GFP_KERNEL",
          "--after", f"{_REC}/6.1-1cpu-thp.json.gz"], "is a trace of 6.1.0-56-amd64"),
        (["replay", "--snapshot", f"{_REC}/7.2-1cpu-thp.json.gz", "--trace", "/etc/hostname"],
         "has no kmem page events"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_model_commands_refuse_bad_input(args, message):
    p = buddyscope(*args)
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("buddyscope: error: ") and message in last, p.stderr


def test_replay_json_and_predict_after():
    import json

    p = buddyscope("replay", f"{_REC}/5.10-1cpu-thp.json.gz", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["allocations"] == len(d["records"]) > 500
    assert d["hits"] == d["allocations"]   # 5.10: every allocation predicted exactly
    r = d["records"][0]
    assert set(r) >= {"index", "cpu", "order", "migratetype", "gfp", "predicted_pfn",
                      "actual_pfn", "hit", "path"}
    p = buddyscope("predict", f"{_REC}/5.10-1cpu-thp.json.gz", "--after",
                   f"{_REC}/5.10-1cpu-thp.json.gz", "--order", "0", "--gfp", "GFP_KERNEL",
                   "-n", "3", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert len(d["results"]) == 3 and all(x["pfn"] for x in d["results"])
    assert d["after_events"] > 1000


_SNAP = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "snapshots"
            / "6.1-2cpu-512m.json.gz")


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["snapshot", _SNAP, "-o", ""], 2, "argument -o/--output: an empty path"),
        (["snapshot", ""], 2, "argument file: an empty path"),
        (["replay", f"{_REC}/7.2-1cpu-thp.json.gz", "--misses", "-1"], 2,
         "not a count (0 or more): '-1'"),
        (["tui", _SNAP, "--interval", "nan"], 1, "--interval must be a number of seconds"),
        (["tui", _SNAP, "--interval", "inf"], 1, "--interval must be a number of seconds"),
        (["lab", "shell", "6.1", "--mem", "infG"], 2, "not a memory size: 'infG'"),
        (["record", "--lab", "6.1", "--workload", "w.sh", "-o", "/nonexistent/f.json.gz"], 1,
         "cannot write /nonexistent/f.json.gz: no such directory /nonexistent"),
        (["record", "--live", "-o", "/nonexistent/f.json.gz", "--", "true"], 1,
         "cannot write /nonexistent/f.json.gz: no such directory /nonexistent"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_values_that_would_have_misled_or_hung(args, status, message, tmp_path):
    kernels = tmp_path / "cache" / "kernels"
    if args[:2] == ["record", "--lab"]:
        # A lab kernel in the cache: the output is checked before it boots.
        from buddyscope.lab import kernels as k

        if not k.cached_kernels():
            pytest.skip("no lab kernel cached: record --lab stops at that first")
        kernels = None
    p = buddyscope(*args, env=None if kernels is None else {"BUDDYSCOPE_CACHE": str(tmp_path / "cache")})
    assert p.returncode == status, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("buddyscope: error: ") and message in last, p.stderr


@pytest.mark.parametrize("command", [["snapshot", _SNAP], ["metrics", _SNAP],
                                     ["replay", f"{_REC}/6.1-1cpu-thp.json.gz", "--json"]],
                         ids=lambda c: c[0])
def test_output_that_cannot_be_written_is_one_line(command):
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-m", "buddyscope", *command], cwd="/",
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == "buddyscope: error: cannot write output: No space left on device\n"
    # Started with stdout closed (>&-).
    p = subprocess.run([sys.executable, "-m", "buddyscope", *command], cwd="/",
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60,
                       preexec_fn=lambda: os.close(1))
    assert p.returncode == 1
    assert p.stderr == "buddyscope: error: cannot write output: standard output is closed\n"


def test_with_stdout_closed_a_command_that_writes_a_file_works(tmp_path):
    # snapshot F -o OUT >&-: nothing goes to stdout. The file opened for OUT
    # must not take fd 1 (what print would then write into it).
    out = tmp_path / "s.json.gz"
    p = subprocess.run([sys.executable, "-m", "buddyscope", "snapshot", _SNAP, "-o", str(out)],
                       cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=60, preexec_fn=lambda: os.close(1))
    assert p.returncode == 0 and p.stderr.startswith(f"wrote {out}: ")
    from buddyscope.model.snapshot import Snapshot
    assert Snapshot.load(out).kernel.release == Snapshot.load(_SNAP).kernel.release


def test_a_profile_not_the_snapshots_own_is_noted():
    p = buddyscope("replay", f"{_REC}/6.1-1cpu-thp.json.gz", "--profile", "7.2")
    assert p.returncode == 0
    assert p.stderr == ("buddyscope: note: profile 7.2 on a snapshot of 6.1.0-56-amd64, "
                        "whose own is 6.1\n")
    assert "profile 7.2" in p.stdout.splitlines()[0]
    p = buddyscope("replay", f"{_REC}/6.1-1cpu-thp.json.gz", "--profile", "6.1")
    assert p.returncode == 0 and p.stderr == ""


def test_profile_names_what_an_old_snapshot_cannot_tell(tmp_path):
    # A 6.12 snapshot saved before kernel features were recorded: its
    # profile cannot be detected, and --profile is how to name it.
    import gzip
    import json

    data = json.load(gzip.open(_SNAP.replace("6.1-", "6.12-")))
    data["kernel"].pop("features", None)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    p = buddyscope("predict", str(old), "--order", "0", "--gfp", "GFP_KERNEL")
    assert p.returncode == 1 and "--profile" in p.stderr
    p = buddyscope("predict", str(old), "--order", "0", "--gfp", "GFP_KERNEL", "--profile", "6.12")
    assert p.returncode == 0 and p.stderr == "", p.stderr
