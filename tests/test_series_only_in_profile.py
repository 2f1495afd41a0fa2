"""Each kernel-version difference lives in one named place: a probe in
``probe/layout.py`` (probing kernel types) or a behaviour-named field of
``model/profile.py``. No other installed code compares a kernel series or
version string: this test reads every module's syntax tree and fails on a
comparison (``==``, ``in``, ``is``, ``<``...) or a ``startswith`` that names
one (``"6.1"``, ``("6.12", "7.2")``, ``PROFILES["5.10"]``), and on a
comparison of ``profile.name``."""

import ast
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
#: The one module allowed to name series.
ALLOWED = {ROOT / "model" / "profile.py"}
#: "5.10", "6.1", "6.12.118", "v6.7", "6.12.": a kernel series or version.
SERIES = re.compile(r"v?\d+\.\d+(\.\d+)?\.?")
#: Installed, but neither library nor model code: recorded data, and the
#: scripts that captured it (their choice of what to capture on which kernel
#: is not a model behaviour).
NOT_CODE = {"buddyscope.fixtures"}


def _installed_dirs():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = conf["tool"]["setuptools"]["package-dir"]
    return sorted({ROOT / d for pkg, d in dirs.items() if pkg not in NOT_CODE})


def _names_series(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str)
               and SERIES.fullmatch(n.value) for n in ast.walk(node))


def _is_profile_name(node: ast.AST) -> bool:
    # profile.name, self.profile.name, alloc.profile.name
    if not (isinstance(node, ast.Attribute) and node.attr == "name"):
        return False
    v = node.value
    return (isinstance(v, ast.Name) and v.id == "profile") or (
        isinstance(v, ast.Attribute) and v.attr == "profile")


def series_checks(source: str, filename: str = "<string>") -> list:
    """(line, code) of every comparison of a series or version in *source*."""
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_series(o) or _is_profile_name(o) for o in operands):
                out.append((node.lineno, ast.get_source_segment(source, node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith")
              and any(_names_series(a) for a in node.args)):
            out.append((node.lineno, ast.get_source_segment(source, node)))
    return out


def test_the_scan_finds_series_checks():
    # The forms the rule forbids, and what it leaves alone.
    bad = '''
if series == "5.10": pass
if p.pcp_free in ("6.12", "7.2"): pass
if "6.1" != s: pass
if alloc.profile is PROFILES["7.2"]: pass
if self.alloc.profile.name == x: pass
if release.startswith("6.12."): pass
'''
    assert [line for line, _ in series_checks(bad)] == [2, 3, 4, 5, 6, 7]
    good = '''
if profile.alloc_harder: pass
x = PROFILES["7.2"]
if sys.version_info >= (3, 10): pass
print(f"profile {alloc.profile.name}")
'''
    assert series_checks(good) == []


def test_no_series_comparison_outside_the_profile():
    dirs = _installed_dirs()
    assert ROOT / "model" in dirs
    found = []
    for d in dirs:
        for path in sorted(d.rglob("*.py")):
            if path in ALLOWED:
                continue
            for line, code in series_checks(path.read_text(), str(path)):
                found.append(f"{path.relative_to(ROOT)}:{line}: {code}")
    assert not found, ("kernel series compared outside model/profile.py (name the behaviour "
                       "in a Profile field, or probe the type in probe/layout.py):\n"
                       + "\n".join(found))
