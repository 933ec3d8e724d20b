"""One API with its workers per test module (see `stack.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.keel.client.stack import serve_api


@pytest.fixture(scope="module")
async def url(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The API's base URL."""
    async with serve_api(temporal_env, tmp_path_factory.mktemp("sdk")) as served:
        yield served
