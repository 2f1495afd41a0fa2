"""Lab tier: one paused guest dumped in every vmcore format QEMU and
makedumpfile offer here (QEMU's kdump formats come out flattened; makedumpfile
``-d 31`` as kdump-tools runs it, each compression it was built with, ELF and
flattened), each read with ``--vmcore`` and giving the lists of the ELF dump
of the same pause, identically."""

import shutil

import pytest

from buddyscope.errors import BuddyscopeError
from buddyscope.lab.dumps import dump_formats, makedumpfile_compressions, makedumpfile_support
from buddyscope.lab.guest import Guest
from buddyscope.probe.sources import SourceSpec, open_source

pytestmark = pytest.mark.lab
pytest.importorskip("drgn")

STIR = "i=0; while [ $i -lt 200 ]; do head -c 12288 /dev/zero > /tmp/f$i; i=$((i+1)); done; rm -f /tmp/f*[02468]"


@pytest.fixture(scope="module")
def dump_sets(tmp_path_factory):
    """Kernel release -> its dumps, kept for the whole module: pytest may run
    the per-format tests of one kernel after another kernel's (it orders them
    by the function-scoped format too), and one boot per kernel is enough."""
    d = tmp_path_factory.mktemp("dumps")
    yield d, {}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def dumps(lab_kernel, dump_sets):
    root, sets = dump_sets
    if lab_kernel.release not in sets:
        d = root / lab_kernel.release
        d.mkdir()
        with Guest.boot(lab_kernel, smp=1, mem_mib=512) as g:
            g.run(STIR, check=True)
            sets[lab_kernel.release] = dump_formats(g, d)
    return sets[lab_kernel.release]


def _read(path, vmlinux):
    with open_source(SourceSpec(vmcore=path, vmlinux=vmlinux)) as src:
        return src.snapshot().to_dict()


FORMATS = ["qemu-kdump-zlib", "qemu-kdump-lzo", "qemu-kdump-snappy", "d31-zlib", "d31-lzo",
           "d31-snappy", "d31-zstd", "d31-elf", "d31-zlib-flattened"]


_ELF_SNAPSHOTS = {}


@pytest.fixture
def elf_snapshot(dumps, lab_kernel):
    if lab_kernel.release not in _ELF_SNAPSHOTS:
        base = _read(dumps["elf"], lab_kernel.vmlinux)
        assert sum(len(l) for z in base["zones"] for a in z["free_area"] for l in a["free_list"]) > 0
        _ELF_SNAPSHOTS[lab_kernel.release] = base
    return _ELF_SNAPSHOTS[lab_kernel.release]


def test_qemu_and_makedumpfile_made_what_they_always_have(dumps):
    # QEMU always has kdump-zlib; makedumpfile always zlib, ELF and flattened.
    assert {"elf", "qemu-kdump-zlib"} <= dumps.keys()
    if shutil.which("makedumpfile") is None:
        pytest.skip("makedumpfile is not installed (apt-get install makedumpfile; tests/run does)")
    assert {"d31-zlib", "d31-elf", "d31-zlib-flattened"} <= dumps.keys()
    assert {f"d31-{c}" for c in makedumpfile_compressions()} <= dumps.keys()


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_format_gives_the_lists_of_the_elf_dump(dumps, elf_snapshot, lab_kernel, fmt):
    if fmt not in dumps:
        if fmt.startswith("d31-"):
            pytest.skip(f"{fmt}: {makedumpfile_support(fmt[4:])}")
        pytest.skip(f"{fmt}: this QEMU cannot write it (query-dump-guest-memory-capability "
                    f"does not list {fmt[5:]})")
    got = _read(dumps[fmt], lab_kernel.vmlinux)
    assert got["capture"]["source"] == "vmcore" and got["capture"]["anomalies"] == []
    assert got["kernel"] == elf_snapshot["kernel"]
    assert got["zones"] == elf_snapshot["zones"]


def test_a_cut_short_flattened_dump_is_refused_in_one_line(dumps, tmp_path):
    cut = tmp_path / "cut"
    with open(dumps["qemu-kdump-zlib"], "rb") as f:
        cut.write_bytes(f.read(1 << 20))
    with pytest.raises(BuddyscopeError, match="truncated or corrupt flattened dump|truncated flattened"):
        open_source(SourceSpec(vmcore=cut))


# -- debug info: the message, and drgn's debuginfod when DEBUGINFOD_URLS is set --

def test_missing_debug_info_names_the_package_and_debuginfod(dumps, lab_kernel, monkeypatch, tmp_path):
    monkeypatch.setenv("BUDDYSCOPE_CACHE", str(tmp_path))  # no cached lab vmlinux
    monkeypatch.delenv("DEBUGINFOD_URLS", raising=False)
    with pytest.raises(BuddyscopeError) as e:
        open_source(SourceSpec(vmcore=dumps["elf"]))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"install linux-image-{lab_kernel.release}-dbg" in msg
    assert "DEBUGINFOD_URLS" in msg and "--vmlinux FILE" in msg


@pytest.fixture
def debuginfod(lab_kernel):
    """A debuginfod server (its HTTP API: GET /buildid/ID/debuginfo) that has
    the lab kernel's -dbg vmlinux; yields (url, the paths asked for)."""
    import http.server
    import threading

    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            if self.path == f"/buildid/{lab_kernel.vmlinux_build_id}/debuginfo":
                data = lab_kernel.vmlinux.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", asked
    srv.shutdown()
    srv.server_close()


def test_with_debuginfod_configured_drgn_fetches_the_vmlinux(dumps, lab_kernel, debuginfod,
                                                              monkeypatch, tmp_path):
    url, asked = debuginfod
    monkeypatch.setenv("BUDDYSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEBUGINFOD_URLS", url)
    monkeypatch.setenv("DEBUGINFOD_CACHE_PATH", str(tmp_path / "debuginfod"))
    with open_source(SourceSpec(vmcore=dumps["qemu-kdump-zlib"])) as src:
        snap = src.snapshot()
    assert snap.kernel.build_id == lab_kernel.vmlinux_build_id
    assert f"/buildid/{lab_kernel.vmlinux_build_id}/debuginfo" in asked
    assert snap.to_dict()["zones"] == _read(dumps["elf"], lab_kernel.vmlinux)["zones"]


def test_a_debuginfod_without_it_is_named_in_the_error(dumps, debuginfod, monkeypatch, tmp_path):
    url, asked = debuginfod
    monkeypatch.setenv("BUDDYSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEBUGINFOD_URLS", url + "nothing-here/")
    monkeypatch.setenv("DEBUGINFOD_CACHE_PATH", str(tmp_path / "debuginfod"))
    with pytest.raises(BuddyscopeError, match=r"no debug info .* debuginfod \(http://127\.0\.0\.1:\d+/nothing-here/\) had none"):
        open_source(SourceSpec(vmcore=dumps["elf"]))
    assert asked, "drgn did not ask the configured debuginfod"
