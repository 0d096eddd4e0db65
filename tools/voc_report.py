#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.voc_report``
(installed: also ``python -m salfmix.cli.voc_report``)."""

from salfmix.cli.voc_report import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
