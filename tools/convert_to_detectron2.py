#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.convert_to_detectron2``
(installed: also ``python -m salfmix.cli.convert_to_detectron2``)."""

from salfmix.cli.convert_to_detectron2 import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
