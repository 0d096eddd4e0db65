#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.bench.gpu_report``
(installed: also ``python -m salfmix.bench.gpu_report``)."""

from salfmix.bench.gpu_report import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
