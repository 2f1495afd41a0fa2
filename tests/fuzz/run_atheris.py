"""Coverage-guided fuzzing of the parsers with atheris (libFuzzer), within a
time budget. Not part of any test tier: run it by hand or in a nightly job::

    pip install atheris
    python tests/fuzz/run_atheris.py --seconds 60            # every target
    python tests/fuzz/run_atheris.py --seconds 300 ftrace gfp

Each target (targets.py) runs in its own process, instrumented, starting from
a scratch copy of its committed corpus (corpus/<target>/). An input that
makes it raise anything but a BuddyscopeError is a crash: libFuzzer writes
it out and this script adds it to the committed corpus (corpus_add.py), where
test_corpus.py replays it in the default tier once it is fixed. The inputs
it merely found interesting stay in the scratch folder.

Prints, per target, the inputs tried and the crashes found; exits 1 if any.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus_add import CORPUS, add  # noqa: E402


def _child(target: str, argv: list) -> None:
    import atheris

    with atheris.instrument_imports(include=["buddyscope"]):
        import targets
        for mod in ("ftrace", "snapshot", "fixture", "validate", "_jsonfile", "gfp", "replay",
                    "allocator", "report", "predict", "request"):
            __import__(f"buddyscope.model.{mod}")
        import buddyscope.probe.procfs  # noqa: F401
        import buddyscope.probe.sources  # noqa: F401

    def one(data: bytes) -> None:
        targets.run(target, data)

    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()


def _run(target: str, seconds: int, work: Path) -> tuple:
    corpus = work / target
    crashes = work / f"{target}-crashes"
    corpus.mkdir(parents=True)
    crashes.mkdir()
    for f in (CORPUS / target).iterdir():
        shutil.copy(f, corpus / f.name)
    argv = [f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/", "-max_len=262144",
            "-rss_limit_mb=2048", "-timeout=20", str(corpus)]
    p = subprocess.run([sys.executable, __file__, "--child", target, *argv],
                       capture_output=True, text=True)
    runs = re.findall(r"Done (\d+) runs", p.stderr)
    tried = int(runs[-1]) if runs else max(
        (int(n) for n in re.findall(r"^#(\d+)", p.stderr, re.M)), default=0)
    found = []
    for f in sorted(crashes.iterdir()):
        found.append(add(target, f.read_bytes()))
    if p.returncode != 0 and not found:
        # libFuzzer died without an artifact: show why.
        sys.stderr.write(p.stderr[-3000:])
    return tried, found


def main() -> int:
    import targets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="time budget per target")
    ap.add_argument("targets", nargs="*", help=f"default: all of {', '.join(targets.TARGETS)}")
    args = ap.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("run_atheris: atheris is not installed (pip install atheris)", file=sys.stderr)
        return 2
    chosen = args.targets or list(targets.TARGETS)
    total_tried = total_found = 0
    with tempfile.TemporaryDirectory(prefix="buddyscope-atheris-") as work:
        for t in chosen:
            tried, found = _run(t, args.seconds, Path(work))
            total_tried += tried
            total_found += len(found)
            print(f"{t:9} {tried:9} inputs  {len(found)} crashes"
                  + "".join(f"\n          {p}" for p in found), flush=True)
    print(f"{'total':9} {total_tried:9} inputs  {total_found} crashes")
    return 1 if total_found else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
