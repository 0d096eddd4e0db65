#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.bench.throughput``
(installed: also ``python -m salfmix.bench.throughput``)."""

from salfmix.bench.throughput import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
