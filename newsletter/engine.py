"""The sending engine: a pool of SMTP connections fed from a queue, paced and retried.

It depends only on a ``Ledger`` (the store's claim and mark methods) and a factory of
``Sender`` connections, as listmonk's manager does. Each message is claimed (committed, with
a lease) before MAIL FROM and recorded as soon as the server answers, so a crash can only
duplicate in the window between the 250 and that commit.

Faults: a 4xx or a dropped connection is retried in this run with exponential backoff and
jitter (``retries_per_run``), then left pending for the next run, until ``max_attempts``
across runs; a 5.1.x refusal is a bounce; other 5xx fail. A server that cannot be reached
at the start, or ``max_connection_failures`` times in a row, stops the run: the rest stays
pending and ``Engine.fatal`` says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from newsletter import failpoints
from newsletter.deliver import Sender, is_hard_bounce
from newsletter.errors import SMTPUnavailableError, StoreError
from newsletter.models import DeliveryStatus, OutgoingMessage, SendResult
from newsletter.pace import RateLimiter

log = logging.getLogger(__name__)
MAX_OPEN = 256  # jobs (with their messages) in the engine at once, queued or parked
WRITE_RETRIES = 5


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """The ``[delivery]`` knobs as plain values."""

    connections: int = 4
    max_per_connection: int = 100
    max_per_second: float = 0
    max_per_hour: int = 0
    retries_per_run: int = 3
    retry_base: float = 2.0
    retry_max: float = 60.0
    max_attempts: int = 5
    max_connection_failures: int = 3
    bounce_after: int = 1
    lease_seconds: float = 600.0


@dataclass(slots=True)
class Job:
    """One ledger row with its finished message."""

    delivery_id: int
    edition_id: int
    subscriber_id: int
    message: OutgoingMessage
    paper_ids: Sequence[str]
    previous: DeliveryStatus  # what the row was before this run claimed it
    attempts: int  # attempts recorded before this run
    tries: int = 0  # attempts in this run
    label: str = ""  # what the report shows for it (the subject)


class Ledger(Protocol):
    def claim(
        self,
        delivery_id: int,
        message_id: str,
        paper_ids: Sequence[str],
        now: datetime,
        max_attempts: int,
        lease_until: datetime | None = None,
    ) -> bool: ...

    def mark_sent(
        self,
        delivery_id: int,
        reply: str,
        now: datetime,
        subscriber_id: int,
        edition_id: int,
        paper_ids: Sequence[str],
    ) -> None: ...

    def mark(self, delivery_id: int, status: DeliveryStatus, reply: str, now: datetime) -> None: ...

    def mark_bounced(
        self, delivery_id: int, subscriber_id: int, reply: str, now: datetime, threshold: int
    ) -> bool: ...

    def release(self, delivery_id: int, previous: DeliveryStatus, now: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a job: sent, uncertain, bounced, failed, retry (pending for a later
    run) or lost (another process claimed it, or the subscriber left)."""

    status: str
    detail: str = ""


Report = Callable[[Job, Outcome], None]


@dataclass
class _State:
    open_jobs: int = 0
    producing: bool = True
    connected: bool = False
    connection_failures: int = 0
    retry_tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Engine:
    """Runs jobs through ``settings.connections`` connections; ``stop()`` ends it gracefully
    (the messages in flight finish, nothing new starts)."""

    def __init__(
        self,
        ledger: Ledger,
        connect: Callable[[], Sender],
        settings: DeliverySettings,
        clock: Callable[[], datetime],
        report: Report,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger, self.connect, self.settings = ledger, connect, settings
        self.clock, self.report = clock, report
        self.limiter = limiter or RateLimiter([])
        self.rng = rng or random.Random()
        self.fatal: SMTPUnavailableError | None = None
        self.error: Exception | None = None
        self.stopping = False
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=2 * settings.connections)
        # open jobs hold their message: bounded, so retries parked on a 4xx storm cannot
        # pull the whole list into memory
        self._open = asyncio.Semaphore(max(MAX_OPEN, 8 * settings.connections))
        self._state = _State()
        self._done = asyncio.Event()
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Start nothing new; what is in flight finishes and is recorded."""
        self.stopping = True
        self._stopped.set()
        for task in list(self._state.retry_tasks):
            task.cancel()

    async def run(self, jobs: Iterable[Job]) -> None:
        """Send every job; returns when all are settled or the run was stopped.

        ``jobs`` is consumed lazily (composing is the caller's work), a few ahead of the
        connections, so memory stays flat however long the list.
        """
        workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.connections)]
        try:
            for job in jobs:
                await self._open.acquire()
                if self.stopping:
                    self._open.release()
                    break
                await self._queue.put(job)
                self._state.open_jobs += 1  # no await since the put: no worker ran between
        except BaseException:
            self.stop()  # composing failed or cancelled: finish what is in flight
            raise
        finally:
            self._state.producing = False
            self._check_done()
            if not self._done.is_set() and all(w.done() for w in workers):
                self._done.set()
            try:
                await self._done.wait()
            except asyncio.CancelledError:
                self.stop()
                await self._done.wait()  # the messages in flight still get recorded
                raise
            finally:
                for _ in workers:
                    await self._queue.put(None)
                await asyncio.gather(*workers)
        if self.error is not None:
            raise self.error

    def _check_done(self) -> None:
        if not self._state.producing and self._state.open_jobs == 0:
            self._done.set()

    def _settle(self, job: Job, outcome: Outcome) -> None:
        """Exactly once per job: its outcome is reported and its slot freed."""
        self._state.open_jobs -= 1
        self._open.release()
        try:
            self.report(job, outcome)
        except Exception:  # a broken report must not settle the job twice
            log.exception("reporting %s failed", job.message.message_id)
        self._check_done()

    async def _worker(self) -> None:
        sender = self.connect()
        try:
            while True:
                job = await self._queue.get()
                if job is None:
                    return
                if self.stopping:  # never claimed: the row stays as it was
                    self._settle(job, Outcome("left", "run stopped"))
                    continue
                try:
                    if not await self._paced():
                        self._settle(job, Outcome("left", "run stopped"))
                        continue
                    await self._attempt(sender, job)
                except Exception as exc:  # a store or programming error: stop cleanly
                    if self.error is None:
                        self.error = exc
                    self._settle(job, Outcome("left", f"{exc.__class__.__name__}: {exc}"))
                    self.stop()
        finally:
            await sender.close()

    async def _paced(self) -> bool:
        """Wait for the rate limiter, or for stop(): False when the run stopped meanwhile."""
        if self.stopping:
            return False
        if not self.limiter.windows:  # no caps: nothing to wait for
            return True
        pace = asyncio.ensure_future(self.limiter.acquire())
        stopped = asyncio.ensure_future(self._stopped.wait())
        await asyncio.wait({pace, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not pace.done():
            pace.cancel()
            return False
        return not self.stopping

    async def _attempt(self, sender: Sender, job: Job) -> None:
        s, ledger = self.settings, self.ledger
        now = self.clock()
        lease = now + timedelta(seconds=s.lease_seconds)
        msg = job.message
        if not ledger.claim(
            job.delivery_id, msg.message_id, job.paper_ids, now, s.max_attempts, lease
        ):
            self._settle(job, Outcome("lost", "claimed elsewhere or no longer active"))
            return
        failpoints.hit("after-claim")
        job.tries += 1
        try:
            result = await sender.send(msg)
        except SMTPUnavailableError as exc:
            ledger.release(job.delivery_id, job.previous, self.clock())
            job.tries -= 1
            self._connection_failed(job, exc)
            return
        self._state.connected = True
        self._state.connection_failures = 0
        if result.ok:
            failpoints.hit("after-accept")
        await self._record(job, result)
        failpoints.hit("after-commit")

    def _connection_failed(self, job: Job, exc: SMTPUnavailableError) -> None:
        state = self._state
        if self.stopping:  # already stopping: this one just stays as it was
            self._settle(job, Outcome("left", str(exc)))
            return
        state.connection_failures += 1
        limit = self.settings.max_connection_failures
        # before any connection worked: down at the start once every connection (up to
        # the limit) failed, not when one of several parallel connects was turned away
        at_start = min(limit, self.settings.connections)
        if state.connection_failures >= (limit if state.connected else at_start):
            self.fatal = exc
            self._settle(job, Outcome("left", str(exc)))
            self.stop()
            return
        log.log(
            logging.WARNING if state.connected else logging.DEBUG,
            "connection failed (%d in a row), retrying: %s",
            state.connection_failures,
            exc,
        )
        self._retry_later(job, state.connection_failures)

    async def _record(self, job: Job, result: SendResult) -> None:
        """Write the outcome, retrying the write a few times: after a 250, a lost write
        would make the row look interrupted and be sent again."""
        for attempt in range(WRITE_RETRIES):
            try:
                self._write(job, result)
                return
            except StoreError:
                if attempt == WRITE_RETRIES - 1:
                    raise
                log.warning("ledger busy recording %s, retrying", job.message.message_id)
                await asyncio.sleep(0.25 * 2**attempt)

    def _write(self, job: Job, result: SendResult) -> None:
        s, ledger, now = self.settings, self.ledger, self.clock()
        reply = f"{result.code or ''} {result.reply}".strip()
        log.info(
            "%s %s: %s %s",
            job.message.message_id,
            job.message.recipient,
            "accepted" if result.ok else "refused",
            reply[:200],
        )
        if result.ok:
            ledger.mark_sent(
                job.delivery_id, reply, now, job.subscriber_id, job.edition_id, job.paper_ids
            )
            self._settle(job, Outcome("sent", job.label))
        elif result.ambiguous:
            ledger.mark(job.delivery_id, DeliveryStatus.UNCERTAIN, reply, now)
            self._settle(job, Outcome("uncertain", reply))
        elif is_hard_bounce(result):
            suppressed = ledger.mark_bounced(
                job.delivery_id, job.subscriber_id, reply, now, s.bounce_after
            )
            self._settle(job, Outcome("bounced", reply + (" (suppressed)" if suppressed else "")))
        elif result.permanent:
            ledger.mark(job.delivery_id, DeliveryStatus.FAILED, reply, now)
            self._settle(job, Outcome("failed", reply))
        elif job.attempts + job.tries >= s.max_attempts:
            reply = f"gave up after {job.attempts + job.tries} attempts: {reply}"
            ledger.mark(job.delivery_id, DeliveryStatus.FAILED, reply, now)
            self._settle(job, Outcome("failed", reply))
        else:
            ledger.mark(job.delivery_id, DeliveryStatus.PENDING, reply, now)
            job.previous = DeliveryStatus.PENDING
            if job.tries <= s.retries_per_run and not self.stopping:
                self._retry_later(job, job.tries)
            else:
                self._settle(job, Outcome("retry", reply))

    def backoff(self, n: int) -> float:
        """Exponential, capped, with jitter: a random point in the upper half of the step."""
        step = min(self.settings.retry_max, self.settings.retry_base * 2.0 ** max(0, n - 1))
        return step * (0.5 + 0.5 * self.rng.random())

    def _retry_later(self, job: Job, n: int) -> None:
        """Put the job back after the backoff; if the run stops first (the task may be
        cancelled before it even starts), the job is settled as left for the next run."""
        queued = False

        async def later() -> None:
            nonlocal queued
            await asyncio.sleep(self.backoff(n))
            if not self.stopping:
                await self._queue.put(job)
                queued = True

        def done(task: asyncio.Task[None]) -> None:
            self._state.retry_tasks.discard(task)
            if not queued:
                self._settle(job, Outcome("retry", "run stopped before the retry"))

        task = asyncio.create_task(later())
        self._state.retry_tasks.add(task)
        task.add_done_callback(done)
