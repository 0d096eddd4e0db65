"""Benchmarks and measurement tools (``make bench``, the GPU kit): timings, and the emulated
device that counts host synchronisations without a GPU."""
