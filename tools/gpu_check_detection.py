#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.bench.detection``
(installed: also ``python -m salfmix.bench.detection``)."""

from salfmix.bench.detection import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
