#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.install.detectron2``
(installed: also ``python -m salfmix.install.detectron2``)."""

from salfmix.install.detectron2 import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
