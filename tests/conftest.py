"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rusm.actors import Runtime


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    async with Runtime("test") as runtime:
        yield runtime
