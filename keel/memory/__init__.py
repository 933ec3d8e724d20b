"""Long-term memory: per-user vector memories in Qdrant and the embedders behind them."""

from keel.contracts.memory import MemoryKind, MemoryScope
from keel.memory._embedders import Embedder, MiniLmEmbedder, StaticEmbedder, load_embedder
from keel.memory._models import MemoryItem, NewMemory, memory_id
from keel.memory._vector import VectorMemory

__all__ = [
    "Embedder",
    "MemoryItem",
    "MemoryKind",
    "MemoryScope",
    "MiniLmEmbedder",
    "NewMemory",
    "StaticEmbedder",
    "VectorMemory",
    "load_embedder",
    "memory_id",
]
