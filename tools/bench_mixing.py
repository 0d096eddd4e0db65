#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.bench.mixing``
(installed: also ``python -m salfmix.bench.mixing``)."""

from salfmix.bench.mixing import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
