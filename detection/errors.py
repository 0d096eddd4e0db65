"""The one error type the detection side raises for problems a user can fix."""
from __future__ import annotations


class DetectionSetupError(ValueError):
    """A bad input file, folder or config key, described in one line that names it.

    The tools print the message alone (no traceback): it already says which file or key is
    wrong and what was expected.
    """
