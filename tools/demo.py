#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.demo`` (installed: also ``salfmix-demo``)."""

from salfmix.cli.demo import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
