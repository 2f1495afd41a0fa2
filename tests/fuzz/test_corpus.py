"""Replay the committed corpus (corpus/<target>/<sha1>): inputs that once
crashed a parser (found by hypothesis or atheris, see corpus/README.md) and
the seeds atheris starts from. Each must now be accepted or refused with a
BuddyscopeError."""

from pathlib import Path

import pytest

import targets

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = sorted((d.name, f) for d in CORPUS.iterdir() if d.is_dir() for f in d.iterdir()
               if f.is_file())


def test_every_target_has_a_corpus():
    assert {t for t, _ in CASES} == set(targets.TARGETS)


@pytest.mark.parametrize("target, path", CASES, ids=[f"{t}/{p.name[:12]}" for t, p in CASES])
def test_corpus_case(target, path):
    targets.run(target, path.read_bytes())
