#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.make_demo_data``
(installed: also ``python -m salfmix.cli.make_demo_data``)."""

from salfmix.cli.make_demo_data import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
