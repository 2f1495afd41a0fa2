"""Tiers: the default tier needs no guest; the `lab` tier (``-m lab``) boots
real Debian kernels from the cache filled by ``buddyscope lab fetch``.

``BUDDYSCOPE_LAB_SERIES`` (e.g. ``6.1`` or ``5.10,6.1,6.12,7.2``) names the
kernels the lab tier must run on; a named kernel missing from the cache is an
error, not a skip. Unset, the lab tier runs on every cached kernel.
"""

import os

import pytest


def _lab_kernels():
    from buddyscope.lab import kernels

    wanted = [s for s in os.environ.get("BUDDYSCOPE_LAB_SERIES", "").replace(",", " ").split()]
    if wanted:
        return [kernels.resolve_kernel(s) for s in wanted]
    return kernels.cached_kernels()


def pytest_generate_tests(metafunc):
    if "lab_kernel" in metafunc.fixturenames:
        ks = _lab_kernels()
        metafunc.parametrize("lab_kernel", ks, ids=[k.series for k in ks], scope="module")
