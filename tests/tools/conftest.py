"""Import the command-line tools (plain scripts in tools/) as modules."""
import importlib.util
import os

import pytest

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


@pytest.fixture
def load_tool():
    """``load_tool("name")`` imports tools/name.py and returns the module."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(TOOLS, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
