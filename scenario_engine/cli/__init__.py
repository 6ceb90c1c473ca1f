"""The ``scenario-engine`` command line: one module per command, ``main`` to run them."""

from .main import main

__all__ = ["main"]
