#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.run_pipeline``
(installed: also ``python -m salfmix.cli.run_pipeline``)."""

from salfmix.cli.run_pipeline import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
