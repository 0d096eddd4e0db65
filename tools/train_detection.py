#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.train_detection``
(installed: also ``python -m salfmix.cli.train_detection``)."""

from salfmix.cli.train_detection import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
