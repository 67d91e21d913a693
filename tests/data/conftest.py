"""Fixtures shared by the data tests."""

from __future__ import annotations

import pytest

from equitune.data.context import ExampleContext, build_contexts
from equitune.market.providers.embedded import load_snapshot


@pytest.fixture(scope="session")
def contexts() -> list[ExampleContext]:
    """Every embedded company under every market condition, valued once for the whole session."""
    return build_contexts(list(load_snapshot().values()))
