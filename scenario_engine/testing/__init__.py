"""Conversation tests: expectations, the client that runs a test, the runner, reports, and
the pytest plugin."""
