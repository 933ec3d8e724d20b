"""An API client wired to the real dev server, with workers running for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from api import create_app
from keel.formation import Formation
from keel.settings import Settings
from keel.store import TranscriptStore
from tests.conftest import running_workers


@pytest.fixture
async def api(
    client: Client, settings: Settings, formation: Formation, store: TranscriptStore
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, formation, client=client, store=store)
    # The app's lifespan too (ASGITransport runs none): it stops what the app started,
    # such as the MCP servers it lists tools from.
    async with (
        running_workers(client, settings, formation, store),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keel") as http,
    ):
        yield http
