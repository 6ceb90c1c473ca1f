"""A scenario server on an event loop of its own, in a background thread.

For code that is not itself running the server's loop: synchronous tests, async tests on
another loop, scripts. ``BackgroundServer.from_paths(paths)`` loads the scenarios; ``start()``
returns once the server listens (on a free port by default) and ``stop()`` closes every
connection with 1001 and ends the thread. The admin operations (``send``, ``connections``,
``close``, ``reset``, ``state``, ``session`` and their setters) run on the server's loop and
wait for their result; the journal is read directly (it is safe to read from any thread).

    with BackgroundServer.from_paths(["scenarios/chat.mock"]) as mock:
        url = mock.url("/api/ws/chat")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .admin import Admin
from .compiler import load_program
from .journal import DEFAULT_LIMIT, Journal
from .program import Program
from .server import ScenarioServer

__all__ = ["BackgroundServer"]

#: How long starting, one admin operation, and stopping may take before giving up.
START_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

_T = TypeVar("_T")


class BackgroundServer:
    """A ScenarioServer serving ``program`` from a thread of its own, with a journal.

    ``server_options`` go to ScenarioServer (``admin=True`` also answers the admin API over
    HTTP, ``max_connections``, ``open_timeout``, ``ssl``…).
    """

    def __init__(
        self,
        program: Program,
        host: str = "127.0.0.1",
        port: int = 0,
        journal_size: int = DEFAULT_LIMIT,
        **server_options: Any,
    ) -> None:
        self.journal = Journal(journal_size)
        self.server = ScenarioServer(program, host, port, journal=self.journal, **server_options)
        self._admin = Admin(self.server)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], **options: Any) -> BackgroundServer:
        """Load, validate and compile scenario files (raising as ``compiler.load_program``)."""
        return cls(load_program(paths), **options)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> BackgroundServer:
        if self._thread is not None:
            raise RuntimeError("this server is already started")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._main(started),),
            name="scenario-engine server",
            daemon=True,
        )
        self._thread.start()
        try:
            started.result(START_TIMEOUT)
        except BaseException:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise
        return self

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as err:  # a port in use, a bad address: the caller's error
            started.set_exception(err)
            return
        started.set_result(None)
        await self._stop.wait()
        # Clients that never answer the close are cut off when the loop ends.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.close(), STOP_TIMEOUT)

    def stop(self) -> None:
        """Close every connection with 1001 (going away) and stop; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(STOP_TIMEOUT + 1)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- where it is -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "") -> str:
        """``ws://127.0.0.1:PORT`` followed by ``path``."""
        return self.server.url(path)

    # ---- admin operations (as the admin API's endpoints) -----------------------------------
    def connections(self) -> list[dict[str, Any]]:
        """Every open connection: as ``GET /__admin/connections``."""
        return self._call(self._admin.connections)

    def send(self, **body: Any) -> int:
        """Push a message: the keywords are ``POST /__admin/send``'s body (``message=`` or
        ``binary=`` bytes, and ``connection=``, ``room=`` or ``route=``); the number of
        clients it was written to. Raises AdminError for an unknown target."""
        return self._call(lambda: self._admin.send(body))

    def close(self, connection: str, code: int = 1000, reason: str = "") -> None:
        """Close one connection: as ``DELETE /__admin/connections/ID``."""
        self._await(lambda: self._admin.close(connection, code, reason))

    def reset(self) -> int:
        """Close every connection with 1012, empty the rooms, restore every file's initial
        ``state`` and clear the journal: as ``POST /__admin/reset``."""
        return self._await(self._admin.reset)

    def state(self, file: str | Path | None = None) -> dict[str, Any]:
        """A copy of a scenario file's ``state``: as ``GET /__admin/state``. ``file`` (as the
        server was given it) is needed only when several files have routes."""
        return self._call(lambda: self._admin.state(_file(file)))

    def set_state(self, value: Mapping[str, Any], file: str | Path | None = None) -> None:
        """Replace a scenario file's ``state`` with ``value``: as ``PUT /__admin/state``.
        Raises AdminError (400) when it is not an object or too large."""
        self._call(lambda: self._admin.set_state(value, _file(file)))

    def session(self, connection: str) -> dict[str, Any]:
        """A copy of one connection's ``session``: as ``GET /__admin/connections/ID/session``."""
        return self._call(lambda: self._admin.session(connection))

    def set_session(self, connection: str, value: Mapping[str, Any]) -> None:
        """Replace one connection's ``session`` with ``value``: as
        ``PUT /__admin/connections/ID/session``. Raises AdminError (404 for an unknown
        connection, 400 when the value is not an object or passes the route's ``max
        session``)."""
        self._call(lambda: self._admin.set_session(connection, value))

    def _call(self, operation: Callable[[], _T]) -> _T:
        """Run a function on the server's loop and return its result."""

        async def run() -> _T:
            return operation()

        return self._await(run)

    def _await(self, operation: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """Run a coroutine function on the server's loop and return its result."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("the server is not running: start() it first")
        return asyncio.run_coroutine_threadsafe(operation(), self._loop).result(CALL_TIMEOUT)


def _file(file: str | Path | None) -> str | None:
    return None if file is None else str(file)
