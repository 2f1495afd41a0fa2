"""Default tier: a writer killed (SIGKILL) mid-write leaves the old good
file, for snapshots and fixtures alike (both go through write_json); a
symlink, a FIFO or a device is written through, never replaced."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from buddyscope.model._atomic import write_atomic
from buddyscope.model.snapshot import Snapshot
from buddyscope.probe.sources import bundled_snapshot

# The child saves the bundled (recorded) snapshot, stalling once half its
# bytes are written, where the test kills it.
CHILD = textwrap.dedent("""
    import os, sys, time
    from buddyscope.model.snapshot import Snapshot
    real_write = os.write
    written = [0]
    def slow_write(fd, data):
        if written[0] > 0:
            print("half", flush=True)
            time.sleep(600)
        n = real_write(fd, data[: max(1, len(data) // 2)])
        written[0] += n
        return n
    os.write = slow_write
    Snapshot.load(sys.argv[1]).save(sys.argv[2])
""")


@pytest.mark.parametrize("name", ["snap.json", "snap.json.gz"])
def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path, name):
    out = tmp_path / name
    Snapshot.load(bundled_snapshot()).save(out)
    before = out.read_bytes()
    # Outside the checkout, so that the installed package is what imports.
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(bundled_snapshot()), str(out)],
                             stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert child.stdout.readline().strip() == "half"
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != name]
        assert leftovers == [f".{name}.{child.pid}.tmp"]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert out.read_bytes() == before
    assert Snapshot.load(out).kernel.release
    # The next write clears what the killed writer left.
    Snapshot.load(bundled_snapshot()).save(out)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_new_file_gets_the_usual_mode_and_an_old_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new", b"x")
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o644
        (tmp_path / "old").write_bytes(b"a")
        os.chmod(tmp_path / "old", 0o600)
        write_atomic(tmp_path / "old", b"b")
        assert (tmp_path / "old").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "old").read_bytes() == b"b"
    finally:
        os.umask(umask)


def test_an_unwritable_directory_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        write_atomic(tmp_path / "no" / "such" / "dir" / "f", b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_is_followed_and_kept(tmp_path):
    (tmp_path / "target").write_bytes(b"old")
    (tmp_path / "link").symlink_to("target")
    write_atomic(tmp_path / "link", b"new")
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "target").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_atomic(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["fifo"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_device_is_written_in_place_not_replaced(tmp_path):
    # A node of its own for /dev/null's device (1, 3): the real one is never at risk.
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    write_atomic(null, b"x" * 100)
    st = os.lstat(null)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["null"]


def test_a_magic_link_to_a_pipe_is_written_in_place():
    # /dev/stdout on a pipe: realpath names "pipe:[N]", no file.
    r, w = os.pipe()
    try:
        write_atomic(f"/proc/self/fd/{w}", b"through /proc/self/fd")
        os.close(w)
        w = None
        assert os.read(r, 100) == b"through /proc/self/fd"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_a_mode_asked_for_is_the_files_whatever_the_umask(tmp_path):
    umask = os.umask(0o077)
    try:
        write_atomic(tmp_path / "m", b"x", mode=0o644)
        assert (tmp_path / "m").stat().st_mode & 0o777 == 0o644
        write_atomic(tmp_path / "m", b"y")          # kept on the next write
        assert (tmp_path / "m").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
