"""The one-way boundaries of docs/architecture.md, checked by import-linter
with the contracts in pyproject.toml, on this checkout.

The checkout's folders become ``buddyscope.*`` only through pyproject's
package-dir mapping, which import-linter cannot see, so the package is laid
out as installed (a copy, by that mapping) in a temporary folder first."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install '.[test]'")

REPO = Path(__file__).resolve().parents[1]


def installed_layout(dest: Path) -> Path:
    """The Python files of every package in pyproject.toml, copied where they
    install (``probe/`` -> ``buddyscope/probe/``)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    for package in config["packages"]:
        src = REPO / mapping[package]
        out = dest.joinpath(*package.split("."))
        out.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, out / f.name)
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    # The copy comes first on the path, before the installed buddyscope.
    return subprocess.run([sys.executable, "-c", code, str(REPO / "pyproject.toml")],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_contracts_hold(tmp_path):
    tree = installed_layout(tmp_path)
    p = lint_imports(tree)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Contracts: 5 kept, 0 broken." in p.stdout, p.stdout
    # Every module of the checkout was read, not an installed copy's.
    analyzed = int(re.search(r"Analyzed (\d+) files", p.stdout).group(1))
    assert analyzed >= len(list(tree.rglob("*.py"))) > 40


def test_a_broken_boundary_fails(tmp_path):
    """The check can fail: the probe importing the lab breaks the layers."""
    tree = installed_layout(tmp_path)
    sources = tree / "buddyscope" / "probe" / "sources.py"
    sources.write_text(sources.read_text() + "\nimport buddyscope.lab.kernels  # noqa\n")
    p = lint_imports(tree)
    assert p.returncode != 0
    assert "buddyscope.probe.sources -> buddyscope.lab.kernels" in p.stdout, p.stdout
    assert "Contracts: 4 kept, 1 broken." in p.stdout, p.stdout
