"""``pipx install .`` gives a working buddyscope: in a fresh pipx home,
outside the checkout, the command runs, the bundled recordings are there,
and drgn finds the plugin. Slow (a minute: it installs every dependency),
so it is its own tier: ``pytest -m install`` (``tests/run`` runs it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.install
ROOT = Path(__file__).resolve().parents[1]


def test_pipx_install_gives_a_working_buddyscope(tmp_path):
    pytest.importorskip("pipx", reason="pipx is in the [test] extra")
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    p = subprocess.run([sys.executable, "-m", "pipx", "install", str(ROOT)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    exe = tmp_path / "bin" / "buddyscope"
    python = tmp_path / "pipx" / "venvs" / "buddyscope" / "bin" / "python"

    def run(*args):
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=env)

    v = run(exe, "--version")
    assert v.returncode == 0 and v.stdout.startswith("buddyscope ")
    # The installed package, not the checkout, with its data files.
    q = run(python, "-c", "import json, buddyscope.api as a, importlib.metadata as m; print(json.dumps("
            "[a.__file__, str(a.bundled_recording('6.1-1cpu-pipe-groom')), "
            "[e.value for e in m.entry_points(group='drgn.plugins') if e.name == 'buddyscope']]))")
    assert q.returncode == 0, q.stderr
    api_file, groom, plugin = json.loads(q.stdout)
    assert str(ROOT) not in api_file and str(ROOT) not in groom
    assert plugin == ["buddyscope.drgn_commands"]
    f = run(exe, "find", groom, "0x82dd", "--json")
    assert f.returncode == 0, f.stderr
    assert json.loads(f.stdout)["pfn"] == 0x82DD
    m = run(exe, "metrics", groom)
    assert m.returncode == 0 and 'node_buddyinfo_blocks{node="0",size="0",zone="DMA32"}' in m.stdout
