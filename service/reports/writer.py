"""Group commit for intake: reports that arrive together are written in one transaction.

A transaction per report costs BEGIN, the INSERTs, COMMIT and a hand-off to Redis, each with its
share of driver and ORM work; under a storm the API spends its time there (bench/RESULTS.md;
bench/profile_writer.py measures this part alone). One writer task per API process takes every
report waiting when it is free, up to `INTAKE_BATCH_MAX`, and commits them together; with one
request at a time a batch is one report, so nothing waits for a batch to fill.

What a client sees does not change: its answer comes only after its report is committed, and a
report is never half-written. A batch that fails for any reason but an outage is tried again one
report at a time, so a bad report (a tracking-code clash, a lost idempotency race) fails alone.
"""

import asyncio
import logging

from sqlalchemy.ext.asyncio import async_sessionmaker

from service.errors import is_outage
from service.handoff import Handoff
from service.reports import service
from service.reports.service import NewReport

log = logging.getLogger(__name__)


class _Waiting:
    __slots__ = ("done", "new")

    def __init__(self, new: NewReport, done: asyncio.Future) -> None:
        self.new, self.done = new, done


class IntakeWriter:
    def __init__(self, sessions: async_sessionmaker, *, handoff: Handoff, batch_max: int):
        self._sessions, self._handoff, self._batch_max = sessions, handoff, batch_max
        self._waiting: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._busy = False  # a batch is being committed

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

    async def write(self, new: NewReport) -> None:
        """Return once the report is committed; raise what its commit raised."""
        if self._task is None or self._task.done():
            raise RuntimeError("the intake writer is not running")
        waiting = _Waiting(new, asyncio.get_running_loop().create_future())
        self._waiting.put_nowait(waiting)
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
            while len(batch) < self._batch_max and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            self._busy = True
            try:
                await self._write(batch)
            finally:
                self._busy = False

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
