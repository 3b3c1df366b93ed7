"""Group commit for intake: reports that arrive together are written in one transaction.

A transaction per report costs BEGIN, the INSERTs, COMMIT and a hand-off to Redis, each with its
share of driver and ORM work; under a storm the API spends its time there (bench/RESULTS.md;
bench/profile_writer.py measures this part alone). One writer task per API process takes every
report waiting when it is free, up to `INTAKE_BATCH_MAX`, and commits them together; with one
request at a time a batch is one report, so nothing waits for a batch to fill. Under load, a batch
also waits up to `INTAKE_LINGER_MS` for the reports of requests already past their checks (`on_the_way`):
with 2 API processes the batches were half as big, and each report paid twice the batch's own cost.

What a client sees does not change: its answer comes only after its report is committed, and a
report is never half-written. A batch that fails for any reason but an outage is tried again one
report at a time, so a bad report (a tracking-code clash, a lost idempotency race) fails alone.
"""

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import async_sessionmaker

from service.errors import is_outage
from service.handoff import Handoff
from service.reports import service
from service.reports.service import NewReport

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    new: NewReport
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class OnTheWay:
    """A request that will hand its report to the writer shortly, until it does or gives up."""

    def __init__(self, writer: "IntakeWriter"):
        self._writer: IntakeWriter | None = writer
        writer._on_the_way += 1

    def arrived(self) -> None:
        if self._writer is not None:
            self._writer._on_the_way -= 1
            self._writer = None


class IntakeWriter:
    def __init__(self, sessions: async_sessionmaker, *, handoff: Handoff, batch_max: int, linger_seconds: float = 0):
        self._sessions, self._handoff, self._batch_max = sessions, handoff, batch_max
        # How long a batch waits for reports on their way (their requests are being checked): a
        # millisecond or two more per answer under load, and batches twice as big.
        self._linger = linger_seconds
        self._waiting: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._busy = False  # a batch is being committed
        self._on_the_way = 0  # requests holding an OnTheWay

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="intake-writer")

    async def close(self) -> None:
        """Write what is waiting, then stop (the API's shutdown)."""
        while (self._busy or not self._waiting.empty()) and self._task is not None and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._handoff.drain()

    @contextmanager
    def on_the_way(self) -> Iterator[OnTheWay]:
        """Around a request's checks before `write` (which it is given): a batch may wait for it."""
        coming = OnTheWay(self)
        try:
            yield coming
        finally:
            coming.arrived()

    async def write(self, new: NewReport, coming: OnTheWay | None = None) -> None:
        """Return once the report is committed; raise what its commit raised."""
        if self._task is None or self._task.done():
            raise RuntimeError("the intake writer is not running")
        waiting = _Waiting(new)
        self._waiting.put_nowait(waiting)
        if coming is not None:
            coming.arrived()
        # Waited for through a cancellation: a client hanging up must not make its request clean up
        # photos of a report that is being committed anyway. The cancellation is asked for again once
        # the commit is known, for the request's next wait (as a shielded anyio scope would, for less).
        cancelled = False
        try:
            while not waiting.done.done():
                try:
                    await asyncio.shield(waiting.done)
                except asyncio.CancelledError:
                    cancelled = True
        finally:
            if cancelled and (task := asyncio.current_task()) is not None:
                task.uncancel()
                task.cancel()
        waiting.done.result()

    async def _run(self) -> None:
        while True:
            batch = [await self._waiting.get()]
            await self._gather(batch)
            self._busy = True
            try:
                await self._write(batch)
            finally:
                self._busy = False

    async def _gather(self, batch: list[_Waiting]) -> None:
        """Add what waits, then what arrives while requests are on their way, for the linger at most."""
        deadline = None
        while len(batch) < self._batch_max:
            if not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
                continue
            if not self._on_the_way or not self._linger:
                return
            deadline = deadline or asyncio.get_running_loop().time() + self._linger
            try:
                async with asyncio.timeout_at(deadline):
                    batch.append(await self._waiting.get())
            except TimeoutError:
                return

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            await self._commit([waiting.new for waiting in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the requests that wait for it
            if len(batch) == 1 or is_outage(exc):
                for waiting in batch:
                    waiting.done.set_exception(exc)
                return
            for waiting in batch:  # one bad report must not fail the others
                await self._write([waiting])
            return
        for waiting in batch:
            waiting.done.set_result(None)

    async def _commit(self, reports: list[NewReport]) -> None:
        async with self._sessions() as session:
            try:
                await service.add_new(session, reports)
                # The jobs go to Redis after the commit, in the background: the next batch need not wait.
                await self._handoff.commit(session)
            except BaseException:
                await session.rollback()
                raise
