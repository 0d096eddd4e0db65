#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.visualize_mixing``
(installed: also ``python -m salfmix.cli.visualize_mixing``)."""

from salfmix.cli.visualize_mixing import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
