"""Temporal workers: which task queues a process polls and what runs there."""

from worker._build import build_workers
from worker._host import worker_host

__all__ = ["build_workers", "worker_host"]
