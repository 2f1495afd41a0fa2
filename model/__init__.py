"""A pure-Python mirror of the page allocator: snapshots, predictions, replay.

Imports neither drgn nor textual.
"""
