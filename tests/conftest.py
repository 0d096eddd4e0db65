"""Shared pytest fixtures and markers."""
import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")


@pytest.fixture(autouse=True)
def _threads() -> None:
    # Two CPU cores on CI: keep torch from oversubscribing them.
    torch.set_num_threads(2)
