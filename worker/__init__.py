"""Temporal workers: which task queues a process polls and what runs there."""

from worker._build import build_workers

__all__ = ["build_workers"]
