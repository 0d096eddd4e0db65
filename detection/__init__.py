"""Detection transfer: fine-tuning pretrained backbones with Detectron2.

Importing this package first restores the few library names Detectron2 0.6 needs
(see :mod:`detection.compat`), so import it before anything from Detectron2.
"""

from detection import compat  # noqa: F401
