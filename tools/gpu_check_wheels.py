#!/usr/bin/env python
"""Entry point of the checkout for ``salfmix.install.wheels``
(installed: also ``python -m salfmix.install.wheels``)."""

from salfmix.install.wheels import get_parser, main, run  # noqa: F401

if __name__ == "__main__":
    run()
