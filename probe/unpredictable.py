"""
Unpredictable
-------------

What in the running kernel makes the allocator's next choices impossible to
predict exactly from a snapshot and the kmem events, read from the kernel's
own state (its static keys and variables), newest kernels and oldest alike:
each is looked up by name, and a kernel built without the feature simply
has no such symbol.

- ``page_alloc.shuffle``: the static key ``page_alloc_shuffle_key`` is on
  (``page_alloc.shuffle=1``; mm/shuffle.c ``shuffle_param_set``).
  ``__free_one_page`` then puts a block that ends at order >= SHUFFLE_ORDER
  (``MAX_ORDER - 1`` / ``MAX_PAGE_ORDER``) at the head or the tail of its
  free list at random (``is_shuffle_order``/``shuffle_pick_tail``,
  ``get_random_u64``), and onlined memory is shuffled (``shuffle_zone``).
- ``page_reporting``: a free page reporting device is registered
  (``pr_dev_info``, e.g. virtio-balloon's free page reporting). Its delayed
  work takes free blocks of order >= ``page_reporting_order`` off the free
  lists (``__isolate_free_page``), gives them back
  (``__putback_isolated_page``) and rotates the lists
  (``list_rotate_to_front``), all with no kmem event, whenever it runs.
- ``debug_guardpage``: the static key ``_debug_guardpage_enabled`` is on
  (``debug_guardpage_minorder=N`` with ``CONFIG_DEBUG_PAGEALLOC``):
  ``expand`` makes the split-off halves below that order guard pages instead
  of free-list entries, which the model does not mirror.
"""

from __future__ import annotations

from typing import Optional

import drgn

__all__ = ("read_unpredictable",)


def _static_key_enabled(prog: drgn.Program, name: str) -> Optional[bool]:
    """Whether ``DEFINE_STATIC_KEY_FALSE(name)`` is on (``struct
    static_key_false``: ``key.enabled`` > 0), or None if the kernel has no
    such key."""
    try:
        key = prog[name]
    except (KeyError, LookupError):
        return None
    return key.key.enabled.counter.value_() > 0


def _variable(prog: drgn.Program, name: str) -> Optional[drgn.Object]:
    try:
        return prog[name]
    except (KeyError, LookupError):
        return None


def read_unpredictable(prog: drgn.Program) -> list[str]:
    """Names (``page_alloc.shuffle``, ``page_reporting``,
    ``debug_guardpage``) of what is on in *prog* that makes exact prediction
    impossible; [] when none is."""
    out = []
    if _static_key_enabled(prog, "page_alloc_shuffle_key"):
        out.append("page_alloc.shuffle")
    dev = _variable(prog, "pr_dev_info")
    if dev is not None and dev.value_():
        out.append("page_reporting")
    if _static_key_enabled(prog, "_debug_guardpage_enabled"):
        out.append("debug_guardpage")
    return out
