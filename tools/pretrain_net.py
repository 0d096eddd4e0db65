#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.cli.pretrain``
(installed: also ``python -m salfmix.cli.pretrain``)."""

from salfmix.cli.pretrain import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
