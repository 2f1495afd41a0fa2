"""Add inputs to the committed corpus: ``corpus/<target>/<sha1 of the bytes>``.

Used by run_atheris.py for what it finds, and by hand for cases found
otherwise (``python tests/fuzz/corpus_add.py TARGET FILE...``)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def add(target: str, data: bytes) -> Path:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    p = d / hashlib.sha1(data).hexdigest()
    if not p.exists():
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(p)
    return p


if __name__ == "__main__":
    target, *files = sys.argv[1:]
    for f in files:
        print(add(target, Path(f).read_bytes()))
