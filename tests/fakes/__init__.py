"""Stand-ins for outside services (LLM vendors), for tests."""
