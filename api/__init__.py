"""The HTTP API: a FastAPI facade over sessions running as Temporal workflows."""

from api.main import create_app, stop_streams

__all__ = ["create_app", "stop_streams"]
