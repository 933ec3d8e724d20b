"""Temporal workflows: deterministic code only, all I/O happens in activities."""

from workflows.session import SessionWorkflow

__all__ = ["SessionWorkflow"]
