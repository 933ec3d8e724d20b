"""Vector memory in Qdrant: embedded local mode under the data dir, or a Qdrant server."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from keel.contracts.memory import MemoryScope
from keel.formation import VectorMemoryConfig
from keel.logging import get_logger
from keel.memory._embedders import Embedder, load_embedder
from keel.memory._models import MemoryItem, NewMemory

log = get_logger(__name__)
_INDEXED = ("tenant", "user_id", "formation", "session", "kind")


class VectorMemory:
    """Per-user long-term memories: write, recall, list, delete, forget.

    One collection per embedder (`keel_memories_<embedder>_<dim>`): switching
    embedders starts afresh rather than mixing incomparable vectors. Every
    point carries `tenant`, `user_id` and `formation`, and every read filters
    on them.

    Args:
        client: an open Qdrant client.
        embedder: the embedder; loaded when first needed if not given.
        config: the formation's vector settings (for the embedder).
    """

    def __init__(
        self,
        client: AsyncQdrantClient,
        *,
        config: VectorMemoryConfig,
        embedder: Embedder | None = None,
    ) -> None:
        self._client = client
        self._config = config
        self._embedder = embedder
        self._ready = asyncio.Lock()
        self._collection: str | None = None

    @classmethod
    def open(cls, config: VectorMemoryConfig, *, data_dir: Path) -> VectorMemory:
        """Connect to the server `config.url` names, or open the local store at `config.path`.

        Local mode holds a lock on its directory: one process at a time. Run the
        API and the worker in one process (`keel dev`) or use a server.
        """
        if config.url:
            api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
            client = AsyncQdrantClient(url=config.url, api_key=api_key)
        else:
            path = Path(config.path).expanduser()
            path = path if path.is_absolute() else data_dir / path
            path.mkdir(parents=True, exist_ok=True)
            client = AsyncQdrantClient(path=str(path))
        return cls(client, config=config)

    async def _ensure(self) -> tuple[str, Embedder]:
        """The collection (created if missing) and the embedder (loaded once)."""
        async with self._ready:
            if self._embedder is None:
                self._embedder = await asyncio.to_thread(load_embedder, self._config.embedder)
            if self._collection is None:
                embedder = self._embedder
                name = re.sub(
                    r"[^A-Za-z0-9_-]", "_", f"keel_memories_{embedder.name}_{embedder.dim}"
                )
                if not await self._client.collection_exists(name):
                    await self._client.create_collection(
                        name,
                        vectors_config=models.VectorParams(
                            size=embedder.dim, distance=models.Distance.COSINE
                        ),
                    )
                    if self._config.url:  # local mode has no payload indexes (and warns)
                        for field in _INDEXED:
                            # Qdrant groups a tenant's points together when told which key
                            # partitions them: every recall filters on the user.
                            schema = models.KeywordIndexParams(
                                type=models.KeywordIndexType.KEYWORD, is_tenant=field == "user_id"
                            )
                            await self._client.create_payload_index(name, field, schema)
                self._collection = name
            return self._collection, self._embedder

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`, computed in a thread."""
        _, embedder = await self._ensure()
        return await asyncio.to_thread(embedder.embed, texts)

    async def write(self, scope: MemoryScope, memories: Sequence[NewMemory]) -> None:
        """Upsert memories; their deterministic ids make a retried write a no-op."""
        if not memories:
            return
        collection, _ = await self._ensure()
        vectors = await self.embed([m.text for m in memories])
        now = datetime.now(UTC).isoformat()
        points = [
            models.PointStruct(
                id=m.id,
                vector=vector,
                payload={
                    **scope.model_dump(),
                    "kind": m.kind,
                    "text": m.text,
                    "session": m.session,
                    "turn_id": m.turn_id,
                    "created_at": now,
                },
            )
            for m, vector in zip(memories, vectors, strict=True)
        ]
        await self._client.upsert(collection, points=points, wait=True)

    async def recall(
        self, scope: MemoryScope, query: str, *, top_k: int, exclude_session: str | None = None
    ) -> list[MemoryItem]:
        """The `top_k` memories most like `query`, best first.

        Exchanges of `exclude_session` are left out (the session's own buffer
        has them); its facts are not.
        """
        collection, _ = await self._ensure()
        (vector,) = await self.embed([query])
        must_not: list[models.Condition] = []
        if exclude_session:
            must_not.append(
                models.Filter(must=[_match("kind", "exchange"), _match("session", exclude_session)])
            )
        response = await self._client.query_points(
            collection,
            query=vector,
            query_filter=models.Filter(must=_scope_filter(scope), must_not=must_not),
            limit=top_k,
            with_payload=True,
        )
        return [_item(p.id, p.payload, p.score) for p in response.points]

    async def list(
        self, scope: MemoryScope, *, limit: int = 100, offset: str | None = None
    ) -> tuple[list[MemoryItem], str | None]:
        """A page of a user's memories (in id order) and the offset of the next page."""
        collection, _ = await self._ensure()
        records, next_offset = await self._client.scroll(
            collection,
            scroll_filter=models.Filter(must=_scope_filter(scope)),
            limit=limit,
            offset=offset,
            with_payload=True,
        )
        items = [_item(r.id, r.payload) for r in records]
        return items, str(next_offset) if next_offset is not None else None

    async def get(self, memory_id: str) -> MemoryItem | None:
        """One memory by id, whoever it belongs to (callers check the owner)."""
        collection, _ = await self._ensure()
        records = await self._client.retrieve(collection, ids=[memory_id], with_payload=True)
        return _item(records[0].id, records[0].payload) if records else None

    async def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete memories by id."""
        collection, _ = await self._ensure()
        await self._client.delete(
            collection, points_selector=models.PointIdsList(points=list(memory_ids)), wait=True
        )

    async def forget(self, tenant: str, user_id: str) -> int:
        """Delete every memory of a user, in every formation; returns how many there were."""
        collection, _ = await self._ensure()
        selector = models.Filter(must=[_match("tenant", tenant), _match("user_id", user_id)])
        counted = await self._client.count(collection, count_filter=selector, exact=True)
        await self._client.delete(
            collection, points_selector=models.FilterSelector(filter=selector), wait=True
        )
        return counted.count

    async def close(self) -> None:
        """Close the client (and release a local store's lock)."""
        await self._client.close()


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _scope_filter(scope: MemoryScope) -> list[models.Condition]:
    return [_match(key, value) for key, value in scope.model_dump().items()]


def _item(point_id: Any, payload: dict[str, Any] | None, score: float | None = None) -> MemoryItem:
    return MemoryItem.model_validate({**(payload or {}), "id": str(point_id), "score": score})
