#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.cls_report``
(installed: also ``python -m salfmix.cli.cls_report``)."""

from salfmix.cli.cls_report import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
