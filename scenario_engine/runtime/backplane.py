"""The backplane: several processes serving one mock, joined through Redis.

Each process keeps its own connections and rooms; what must reach the others goes through one
Redis server (``serve --backplane redis://HOST:PORT/DB``), with redis-py's ``redis.asyncio``:

- deliveries (a broadcast, a push) are published on one pub/sub channel, one PUBLISH each;
  every process hands them to its own members and skips its own publications (the process
  that publishes has delivered to its members already);
- each file's ``state`` is kept in Redis under a lock (``shared_state.py``);
- the routes' own timers run on the process that holds a lease (``lease.py``).

This module owns the connections to Redis, the channels, the publishing and the listening:
the subscription is made again, with backoff, after Redis is lost (redis-py's retries do not
keep a ``PubSub`` alive across a restart), the outage is logged once when it starts and once
when it ends, and counted (``status``).

Every name in Redis starts with the prefix: ``--backplane-prefix``, or by default one made of
the database number and the names of the files served. Pub/sub ignores the database number, so
two mocks sharing one Redis (even on two databases) would hear each other without it.

For another part (the admin API across processes) — sending and asking every process:

- A push to a room, a route or a connection on every process: deliver it here, then
  ``backplane.publish(Delivery(data, route=PATH, rooms=[…], connection=ID))``; each other
  process delivers it to its own connections that match (``cluster.py`` does).
- A question to every process, this one included, answered by each: register the answer on
  every process with ``backplane.answer("connections", handler)`` (``handler``: an async
  function of the question's arguments, returning JSON data), then
  ``await backplane.ask_all("connections", {...}, timeout)``: an ``Answers`` with each
  process's answer by its ``origin`` and how many processes did not answer in time. The
  number of processes is the number of subscribers PUBLISH reports, so nothing needs a list
  of the processes.
- The state as every process sees it, or a change every process sees when it returns:
  ``await cluster.state.exclusive(file, action)`` runs ``action`` while this process holds the
  file's state, fresh (``shared_state.py``); ``replace`` and ``reset`` outside of it reach the
  other processes at the file's next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import BackplaneError, UsageError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_RETRY",
    "Answers",
    "Backplane",
    "BackplaneSettings",
    "Delivery",
    "default_prefix",
    "load_redis",
    "spawn",
    "stop",
    "wait_a_while",
]

logger = logging.getLogger("scenario_engine")

#: How long the lease of the routes' own timers (and a lock of a file's state) lasts unless
#: renewed (seconds): a process that dies holding it is replaced within this.
DEFAULT_LEASE = 5.0
#: The longest wait between two attempts to reach a lost Redis (seconds); the first is
#: RETRY_FIRST, each next one twice the last.
DEFAULT_RETRY = 5.0
RETRY_FIRST = 0.05
#: How long one command may take before Redis counts as lost (seconds).
DEFAULT_TIMEOUT = 2.0
#: Deliveries waiting to be published, at most: past it (Redis slower than the broadcasts)
#: they are dropped and counted, instead of growing the memory.
MAX_QUEUED = 10_000
#: Deliveries sent to Redis in one pipeline.
PUBLISH_BATCH = 500
#: Questions of ``ask_all`` being answered here at once, at most.
MAX_ANSWERING = 64


def load_redis() -> Any:
    """redis-py's asyncio module; UsageError saying how to install it when it is missing."""
    try:
        from redis import asyncio as redis_asyncio
    except ImportError:
        raise UsageError(
            "--backplane needs redis-py: pip install 'scenario-engine[redis]'"
        ) from None
    return redis_asyncio


@dataclass(frozen=True)
class BackplaneSettings:
    """Where Redis is, and the timings of the backplane (tests make them short)."""

    url: str
    #: The start of every name in Redis (None: one derived from the DB and the files).
    prefix: str | None = None
    #: How long what a process holds lasts unless renewed or given back (seconds): the lease
    #: of the routes' own timers, the lock of a file's state. A process that dies holding one
    #: is taken over within this.
    lease: float = DEFAULT_LEASE
    retry: float = DEFAULT_RETRY
    timeout: float = DEFAULT_TIMEOUT

    def shown_url(self) -> str:
        """The URL without its password."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{user}:***@{host}").geturl()


@dataclass(slots=True)
class Delivery:
    """A message for the connections of other processes: those of ``route`` (its path; None:
    every route), in one of ``rooms`` (None: whether in a room or not), or the connection
    ``connection`` alone (its id)."""

    data: str | bytes
    route: str | None = None
    rooms: list[str] | None = None
    connection: str | None = None
    #: The process that published it.
    origin: str = ""

    def encode(self, origin: str) -> bytes:
        """A header line of JSON, then the message as it goes on the wire."""
        header: dict[str, Any] = {"o": origin}
        if self.route is not None:
            header["r"] = self.route
        if self.rooms is not None:
            header["m"] = self.rooms
        if self.connection is not None:
            header["c"] = self.connection
        if isinstance(self.data, bytes):
            header["b"] = 1
            payload = self.data
        else:
            payload = self.data.encode()
        return json.dumps(header, ensure_ascii=False).encode() + b"\n" + payload

    @classmethod
    def decode(cls, message: bytes) -> Delivery:
        """Raises ValueError for a message that is not a delivery."""
        head, newline, payload = message.partition(b"\n")
        if not newline:
            raise ValueError("no header line")
        header = json.loads(head)
        if not isinstance(header, dict) or not isinstance(header.get("o"), str):
            raise ValueError("the header is not a delivery's")
        rooms = header.get("m")
        if rooms is not None and not (
            isinstance(rooms, list) and all(isinstance(r, str) for r in rooms)
        ):
            raise ValueError("rooms that are not a list of names")
        data: str | bytes = payload if header.get("b") else payload.decode()
        return cls(data, _text_or_none(header, "r"), rooms, _text_or_none(header, "c"), header["o"])


def _text_or_none(header: dict[str, Any], key: str) -> str | None:
    value = header.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{key!r} is not a string")


@dataclass
class Answers:
    """What ``ask_all`` collected: each process's answer by its origin; errors (a process
    that could not answer) likewise, as text; and how many processes did not answer in time."""

    answers: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    missing: int = 0


#: Answers a question of ``ask_all``: its arguments in, JSON data out.
Answerer = Callable[[Any], Awaitable[Any]]
#: What is called with each message of a channel (bytes, as published).
Listener = Callable[[bytes], None]
#: Told when Redis is lost (False) and when it is back (True).
Watcher = Callable[[bool], None]


class Backplane:
    """The connections of this process to Redis: one for commands, one for the subscription.

    ``files``: the scenario files served (the default prefix is made from their names).
    Use ``connect`` (raises BackplaneError when Redis cannot be reached), ``start``, then
    ``close``; every method runs on the server's event loop.
    """

    def __init__(self, settings: BackplaneSettings, files: Iterable[str]) -> None:
        redis_asyncio = load_redis()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.settings = settings
        scheme = urlsplit(settings.url).scheme
        if scheme not in ("redis", "rediss"):
            raise UsageError(
                f"--backplane {settings.shown_url()}: expected redis://HOST:PORT/DB or "
                "rediss://… (TLS), with user:password@ before the host if Redis needs one"
            )
        options: dict[str, Any] = {
            "socket_timeout": settings.timeout,
            "socket_connect_timeout": settings.timeout,
            # One more try at once, on a new connection: the first command after a restart of
            # Redis meets a pooled connection that is dead. Outages are ours to handle.
            "retry": Retry(NoBackoff(), 1),
        }
        try:
            self.redis: Redis = redis_asyncio.Redis.from_url(settings.url, **options)
            self._subscriber: Redis = redis_asyncio.Redis.from_url(
                settings.url, **{**options, "socket_timeout": None}
            )
        except ValueError as err:
            raise UsageError(f"--backplane {settings.shown_url()}: {err}") from None
        self.db = int(self.redis.connection_pool.connection_kwargs.get("db", 0) or 0)
        self.names = sorted({Path(file).name for file in files})
        self.prefix = settings.prefix or default_prefix(self.db, self.names)
        #: This process, as the others know it (in the deliveries and answers it sends).
        self.origin = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.deliveries = self.key("deliver")
        self._ask = self.key("ask")
        self._answers = self.key(f"answer:{self.origin}")
        self._listeners: dict[bytes, Listener] = {
            self._ask.encode(): self._asked,
            self._answers.encode(): self._answered,
        }
        self._watchers: list[Watcher] = []
        self._answerers: dict[str, Answerer] = {}
        self._questions: dict[int, tuple[Answers, asyncio.Event]] = {}
        self._question_ids = itertools.count(1)
        self._answering: set[asyncio.Task[None]] = set()
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._publishing: asyncio.Task[None] | None = None
        self._listening: asyncio.Task[None] | None = None
        #: Which listening task is the current one (a replaced one stops at its next step).
        self._listener = 0
        self._closing = False
        self.up = False
        #: When the current outage began (time.monotonic()); None while Redis is reachable.
        self._lost_at: float | None = None
        self.outages = 0
        self.published = 0
        #: Deliveries received from the other processes.
        self.received = 0
        #: Deliveries not published: Redis lost, or too many waiting.
        self.dropped = 0
        #: Messages of the channels that could not be read (another version of the engine?).
        self.unreadable = 0

    def key(self, name: str) -> str:
        """A name in Redis (a key or a channel) of this mock."""
        return f"{self.prefix}:{name}"

    def listen(self, channel: str, listener: Listener) -> None:
        """Call ``listener`` with each message published on ``channel`` (before ``start``)."""
        self._listeners[channel.encode()] = listener

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(False)`` when Redis is lost, ``watcher(True)`` when it is back."""
        self._watchers.append(watcher)

    def answer(self, question: str, answerer: Answerer) -> None:
        """Answer ``question`` of ``ask_all`` (from any process) with ``answerer``."""
        self._answerers[question] = answerer

    # ---- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        """Check that Redis answers; BackplaneError (one line) when it does not."""
        from redis.exceptions import RedisError

        try:
            await self.redis.ping()
        except (RedisError, OSError) as err:
            raise BackplaneError(
                f"cannot reach the backplane at {self.settings.shown_url()}: {_why(err)}"
            ) from None

    async def start(self) -> None:
        """Subscribe, and publish from now on; returns once subscribed (or once the first try
        failed: the subscription is then made again with backoff)."""
        subscribed = asyncio.get_running_loop().create_future()
        self._listening = spawn(self._listen(0, 0.0, subscribed), "listening")
        self._publishing = spawn(self._publish_queued(), "publishing")
        await subscribed

    async def close(self) -> None:
        """Publish what waits (for up to the command timeout), then disconnect."""
        self._closing = True
        self._wake.set()  # the writer publishes what waits, then ends
        if self._publishing is not None:
            await asyncio.wait([self._publishing], timeout=self.settings.timeout)
        tasks = list(self._answering)
        for task in (self._publishing, self._listening):
            if task is not None:
                tasks.append(task)
        for task in tasks:
            task.cancel()
        for client in (self.redis, self._subscriber):  # which ends the reads under way too
            with contextlib.suppress(Exception):
                await client.aclose()
        await stop(tasks, self.settings.timeout)

    # ---- publishing ------------------------------------------------------------------------
    def publish(self, delivery: Delivery) -> None:
        """Send a delivery to the other processes, in order, without waiting. At most once:
        while Redis is lost, or when too many wait already, it is dropped (and counted)."""
        if not self.up or len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append(delivery.encode(self.origin))
        self._wake.set()

    async def _publish_queued(self) -> None:
        """The one writer of deliveries: what was queued during a turn of the loop goes out
        in one pipeline, in order (so a sender's broadcasts keep their order)."""
        from redis.exceptions import RedisError

        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), PUBLISH_BATCH))]
                try:
                    pipe = self.redis.pipeline(transaction=False)
                    for message in batch:
                        pipe.publish(self.deliveries, message)
                    await pipe.execute()
                except (RedisError, OSError) as err:
                    self.dropped += len(batch) + len(queue)
                    queue.clear()
                    self.lost(err)
                    break
                self.published += len(batch)
            if self._closing:
                return

    # ---- listening -------------------------------------------------------------------------
    async def _listen(
        self, listener: int, wait: float, subscribed: asyncio.Future[None] | None = None
    ) -> None:
        """Keep a subscription to this mock's channels (the first try ``wait`` seconds from
        now), making it again after Redis is lost, with backoff; hand each message to its
        listener. ``subscribed`` is set once the first try is over. ``listener``: this task's
        number; it stops once another has replaced it (``lost``)."""
        from redis.exceptions import RedisError

        def current() -> bool:
            return listener == self._listener and not self._closing

        delay = RETRY_FIRST
        await asyncio.sleep(wait)
        while current():
            pubsub: PubSub = self._subscriber.pubsub()
            try:
                await pubsub.subscribe(*self._listeners)
                # Up once Redis confirmed every channel: from then on nothing published is missed.
                confirmed = 0
                while confirmed < len(self._listeners):
                    message = await pubsub.get_message(timeout=self.settings.timeout)
                    if message is None:
                        raise TimeoutError("no confirmation of the subscription")
                    if message["type"] == "subscribe":
                        confirmed += 1
                    elif current():
                        self._dispatch(message)
                if not current():
                    break
                self._back()
                delay = RETRY_FIRST
                if subscribed is not None and not subscribed.done():
                    subscribed.set_result(None)
                while current():
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and current():
                        self._dispatch(message)
            except (RedisError, OSError) as err:
                if current():
                    self._lose(err)
            finally:
                if subscribed is not None and not subscribed.done():
                    subscribed.set_result(None)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # (redis-py's)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.settings.retry)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return
        listener = self._listeners.get(message["channel"])
        if listener is None:
            return
        try:
            listener(message["data"])
        except ValueError as err:
            self.unreadable += 1
            if self.unreadable == 1:  # once: a stream of them would flood the log
                logger.warning("backplane: unreadable message on %s: %s", message["channel"], err)
        except Exception:  # a bug of ours: this message is lost, the next ones are read
            logger.exception("backplane: a message could not be handled")

    def lost(self, error: BaseException) -> None:
        """Redis failed a command (called by the parts that send commands): count an outage
        and subscribe again with backoff, as when the subscription itself fails."""
        if self._closing or not self.up:
            return
        self._lose(error)
        if self._listening is not None:  # its subscription may look alive: make it again
            self._listening.cancel()
            self._listener += 1
            self._listening = spawn(self._listen(self._listener, RETRY_FIRST), "listening")

    def _lose(self, error: BaseException) -> None:
        if self._closing:
            return
        if self._lost_at is None:  # the start of an outage: said once
            self._lost_at = time.monotonic()
            self.outages += 1
            logger.error(
                "backplane lost: %s: %s; until it is back, broadcasts reach this process's "
                "clients only, state is this process's copy, and route timers run here",
                self.settings.shown_url(),
                _why(error),
            )
        self._set_up(False)

    def _back(self) -> None:
        if self._lost_at is not None:
            logger.warning(
                "backplane back after %.1f s: %s (%d deliveries not sent to other processes "
                "so far)",
                time.monotonic() - self._lost_at,
                self.settings.shown_url(),
                self.dropped,
            )
            self._lost_at = None
        self._set_up(True)

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        for watcher in self._watchers:
            watcher(up)

    # ---- asking every process --------------------------------------------------------------
    async def ask_all(self, question: str, arguments: Any = None, timeout: float = 1.0) -> Answers:
        """Ask every process (this one included) ``question``; their answers, collected for
        up to ``timeout`` seconds. Raises BackplaneError when Redis cannot be reached."""
        from redis.exceptions import RedisError

        ident = next(self._question_ids)
        collected, answered = self._questions[ident] = Answers(), asyncio.Event()
        message = json.dumps({"o": self.origin, "i": ident, "q": question, "a": arguments})
        try:
            try:
                receivers = int(await self.redis.publish(self._ask, message))
            except (RedisError, OSError) as err:
                self.lost(err)
                raise BackplaneError(f"the backplane cannot be reached: {_why(err)}") from None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(collected.answers) + len(collected.errors) < receivers:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                answered.clear()
                await wait_a_while(answered, remaining)
            collected.missing = max(0, receivers - len(collected.answers) - len(collected.errors))
            return collected
        finally:
            del self._questions[ident]

    def _asked(self, message: bytes) -> None:
        asked = json.loads(message)
        if not isinstance(asked, dict) or not isinstance(asked.get("o"), str):
            raise ValueError("not a question")
        if len(self._answering) >= MAX_ANSWERING:
            return  # the asker counts this process as missing
        task = spawn(self._answer(asked), "answering")
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, asked: dict[str, Any]) -> None:
        from redis.exceptions import RedisError

        reply: dict[str, Any] = {"o": self.origin, "i": asked.get("i")}
        answerer = self._answerers.get(str(asked.get("q")))
        if answerer is None:
            reply["e"] = f"no answer to {asked.get('q')!r} here"
        else:
            try:
                reply["r"] = await answerer(asked.get("a"))
            except Exception as err:
                reply["e"] = f"{type(err).__name__}: {err}"
        try:
            await self.redis.publish(self.key(f"answer:{asked['o']}"), json.dumps(reply))
        except (RedisError, OSError) as err:
            self.lost(err)

    def _answered(self, message: bytes) -> None:
        reply = json.loads(message)
        if not isinstance(reply, dict) or not isinstance(reply.get("o"), str):
            raise ValueError("not an answer")
        asked = self._questions.get(reply["i"]) if isinstance(reply.get("i"), int) else None
        if asked is None:
            return  # too late: ask_all has returned
        collected, answered = asked
        if "e" in reply:
            collected.errors[reply["o"]] = str(reply["e"])
        else:
            collected.answers[reply["o"]] = reply.get("r")
        answered.set()

    # ---- what it did -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The backplane as the admin API shows it."""
        return {
            "url": self.settings.shown_url(),
            "prefix": self.prefix,
            "process": self.origin,
            "connected": self.up,
            "outages": self.outages,
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
        }


def spawn(coroutine: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
    """A task of the backplane's: one that ends with an error (a bug of ours) says so in the
    log instead of vanishing with it."""
    task = asyncio.create_task(coroutine)
    task.add_done_callback(lambda done: _report(done, what))
    return task


async def wait_a_while(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set, ``seconds`` at most. (``asyncio.timeout``, not ``wait_for``:
    on Python 3.11, ``wait_for`` can swallow a cancellation that comes as the event is set,
    and a loop of it then never ends.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def stop(tasks: Iterable[asyncio.Task[None]], within: float) -> None:
    """Cancel the tasks and wait for them to end (``within`` seconds at most). Each of them
    also ends its loop on a flag of its own: redis-py (8.1) may let a command finish
    normally in a task that was cancelled meanwhile, which then never sees the cancellation
    (measured)."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=within)


def _report(task: asyncio.Task[None], what: str) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("backplane: %s stopped", what, exc_info=task.exception())


def default_prefix(db: int, names: Iterable[str]) -> str:
    """``scenario-engine:DB:DIGEST``, the digest of the files' names: the processes of one mock
    serve the same files and meet; two mocks of other files do not hear each other."""
    digest = hashlib.blake2b("\n".join(sorted(names)).encode(), digest_size=4).hexdigest()
    return f"scenario-engine:{db}:{digest}"


def _why(error: BaseException) -> str:
    """An error of redis-py or of the socket in a few words."""
    text = str(error) or type(error).__name__
    return text.rstrip(".")
