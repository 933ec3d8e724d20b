"""Keel: a durable runtime for AI agents, built on Temporal."""

from keel.tools import ToolContext, tool

__version__ = "0.1.0"

__all__ = ["ToolContext", "__version__", "tool"]
