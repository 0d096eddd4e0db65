#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.bench.pretrain``
(installed: also ``python -m salfmix.bench.pretrain``)."""

from salfmix.bench.pretrain import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
