"""Every parser of outside input, fuzzed with hypothesis: real inputs
(fixtures/) with things broken, and inputs built from each format's grammar
with hostile values (strategies.py). The contract (targets.py): a clean
BuddyscopeError or an accepted input, never another exception.

Deterministic for CI: derandomized, a fixed number of examples, no example
database; the whole file runs in about 15 s. The coverage-guided run is
run_atheris.py (not in the default tier); what either finds is committed
under corpus/ and replayed by test_corpus.py.
"""

import pytest
from hypothesis import HealthCheck, given, settings

import strategies
import targets

# Examples per target: the JSON targets load and replay a model, the others
# are cheap.
EXAMPLES = {"ftrace": 100, "snapshot": 60, "fixture": 15, "procfs": 80, "gfp": 150,
            "vmcore": 100}

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_parser_fails_only_cleanly(target):
    @settings(FUZZ, max_examples=EXAMPLES[target])
    @given(strategies.STRATEGIES[target])
    def fuzz(data):
        targets.run(target, data)

    fuzz()


def test_the_mutated_inputs_reach_past_the_loaders():
    """The JSON mutations must not all be refused at the door: a good part
    of them must load and reach the model, or the fuzzing proves little."""
    from buddyscope.errors import BuddyscopeError
    from buddyscope.model.snapshot import Snapshot

    loaded = refused = 0

    @settings(FUZZ, max_examples=60)
    @given(strategies.STRATEGIES["snapshot"])
    def count(data):
        nonlocal loaded, refused
        try:
            Snapshot.load(targets._file("count.json", data))
            loaded += 1
        except BuddyscopeError:
            refused += 1

    count()
    assert loaded >= 5 and refused >= 5, (loaded, refused)
