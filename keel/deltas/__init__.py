"""Token deltas: an ephemeral pub/sub side channel from LLM activities to API processes."""

from keel.deltas._base import Delta, DeltaBus, delta_bus_for
from keel.deltas._memory import InProcessDeltaBus
from keel.deltas._redis import RedisDeltaBus

__all__ = ["Delta", "DeltaBus", "InProcessDeltaBus", "RedisDeltaBus", "delta_bus_for"]
