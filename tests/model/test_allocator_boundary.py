"""Replay (and every other caller) changes the allocator only through its
public methods, each named after the kernel function it mirrors: no module
but ``model/allocator.py`` reaches into an ``Allocator``'s private methods or
state (``alloc._pcp_take``, ``self.alloc._del``, ``a._expand``...)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("model", "probe", "tui", "lab", "buddyscope")


def _is_allocator(node: ast.AST) -> bool:
    # The names an Allocator goes by outside allocator.py: alloc, a,
    # self.alloc, self._alloc.
    if isinstance(node, ast.Name):
        return node.id in ("alloc", "a")
    return isinstance(node, ast.Attribute) and node.attr in ("alloc", "_alloc")


def private_uses(source: str) -> list:
    """(line, attribute) of each private attribute read off an allocator."""
    return [(n.lineno, n.attr) for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Attribute) and n.attr.startswith("_")
            and not n.attr.startswith("__") and _is_allocator(n.value)]


def test_the_scan_finds_private_calls():
    src = "a._del(p)\nself.alloc._pcp_take(p)\nalloc.pcp_take(p)\na.buddy.get(p)\nx._del(p)\n"
    assert private_uses(src) == [(1, "_del"), (2, "_pcp_take")]


def test_no_private_allocator_use_outside_the_allocator():
    found = []
    for d in CODE:
        for path in sorted((ROOT / d).rglob("*.py")):
            if path == ROOT / "model" / "allocator.py":
                continue
            for line, attr in private_uses(path.read_text()):
                found.append(f"{path.relative_to(ROOT)}:{line}: {attr}")
    assert not found, "private Allocator members used outside allocator.py:\n" + "\n".join(found)
