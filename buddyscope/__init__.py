"""buddyscope: look inside the Linux page allocator and predict what it hands out next."""

__version__ = "0.1.0"
