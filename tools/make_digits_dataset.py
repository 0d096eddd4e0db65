#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.make_digits_dataset``
(installed: also ``python -m salfmix.cli.make_digits_dataset``)."""

from salfmix.cli.make_digits_dataset import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
