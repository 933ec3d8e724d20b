"""Keel: a durable runtime for AI agents, built on Temporal."""

__version__ = "0.1.0"

__all__ = ["__version__"]
