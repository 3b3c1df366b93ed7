"""Engine, sessions and the one place where a request's transaction is committed or rolled back."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import MetaData, event, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from service.settings import Settings

# Stable constraint names, so Alembic migrations read the same on SQLite and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """The engine for DATABASE_URL (or `url`, e.g. the read replica's) with the pool sizes from settings.

    hide_parameters: a database error's text carries its statement's parameters (token hashes,
    webhook secrets, encrypted contact data), and such errors end up in logs."""
    url = url or settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_timeout=5,
        hide_parameters=True,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": 30,
            **statement_options(settings),
        },
    )


def _unnamed() -> str:
    return ""


# Behind PgBouncer (DB_PGBOUNCER): only unnamed prepared statements, so its transaction mode works.
# Behind PgBouncer a later transaction may run on another server connection, where a named
# statement from an earlier one does not exist (or its name is taken by another client). With
# asyncpg's statement cache off and SQLAlchemy's statements unnamed, asyncpg sends each statement's
# Parse together with its Bind (one round trip; SQLAlchemy still caches the result description),
# so nothing outlives a transaction. tests/test_scale_out.py runs intake and the worker through PgBouncer.
PGBOUNCER_SAFE_STATEMENTS = {"statement_cache_size": 0, "prepared_statement_name_func": _unnamed}


def statement_options(settings: Settings) -> dict[str, Any]:
    """asyncpg's statement options: PgBouncer-safe when DB_PGBOUNCER says PgBouncer is in front; otherwise
    the drivers' defaults, where a connection keeps what it prepared (a statement run again costs no Parse
    nor Describe, and a many-row INSERT no prepare round trip before its rows)."""
    return dict(PGBOUNCER_SAFE_STATEMENTS) if settings.db_pgbouncer else {}


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed when the route returns (then its jobs and webhook events
    are handed to the workers, service.handoff), rolled back when it raises."""
    from service.handoff import discard

    async with request.app.state.sessions() as session:
        try:
            yield session
            await request.app.state.handoff.commit(session)
        except BaseException:
            discard(session)
            await session.rollback()
            raise


# scope="function": the commit happens before the response is sent, so a client never holds a 2xx for
# a write that then failed to commit, nor reads before its own earlier write is visible.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session on the read replica (DATABASE_READ_URL) for heavy reads; the primary when none is set.

    A replica lags the primary a little: use it only where a few seconds' staleness is fine (the IOC).
    """
    async with request.app.state.read_sessions() as session:
        try:
            yield session
        finally:
            if session.in_transaction():
                await session.rollback()  # nothing to keep: reads only


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def lock_rows(session: AsyncSession, column: Any, where: Any) -> None:
    """Before reading rows this transaction will change: the lock SELECT … FOR UPDATE takes on PostgreSQL.

    SQLite ignores FOR UPDATE and its reads take no lock, so two requests could both read a ticket as
    unclaimed and both claim it. There a no-op UPDATE of the same rows takes the database's write lock
    first (held to the commit; the other request waits busy_timeout), and the read that follows in the
    same transaction sees the other's commit. On PostgreSQL this does nothing: the caller's
    `with_for_update()` does it there."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "sqlite":
        await session.execute(update(column.table).where(where).values({column: column}))


class SessionOnDemand:
    """A session opened the first time it is asked for (`get`): for a unit of work that usually reads
    nothing (intake, whose writes go through the intake writer's own session), so that the usual case
    pays nothing for a session it would not use. `of` wraps a session that is open already."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession] | None = None) -> None:
        self._sessions = sessions
        self.opened: AsyncSession | None = None

    @classmethod
    def of(cls, session: AsyncSession) -> "SessionOnDemand":
        on_demand = cls()
        on_demand.opened = session
        return on_demand

    def get(self) -> AsyncSession:
        if self.opened is None:
            assert self._sessions is not None
            self.opened = self._sessions()
        return self.opened

    async def __aenter__(self) -> "SessionOnDemand":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Closes what this opened (a session given to `of` stays its owner's to close)."""
        if self.opened is not None and self._sessions is not None:
            await self.opened.__aexit__(*exc_info)  # closes it as `async with session` does
