"""Many rows of one table inserted as plain values, with less of SQLAlchemy's work per row.

`session.execute(insert(table), rows)` looks its compiled statement up by a cache key built from the
statement each time, then for every row builds a dictionary of parameters (`construct_params`) before
turning it into the driver's tuple. `insert` compiles the statement once per database dialect, table and
set of keys, and builds each row's tuple directly, through the same type processors SQLAlchemy applies
(the JSON encoding, encrypted columns, SQLite's UUID and datetime forms): what is stored is the same.

It takes the values as given: a column whose default SQLAlchemy would compute for a row left without it
(a Python-side default) is refused when the statement is compiled, so no row ever misses its default.
"""

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Table
from sqlalchemy import insert as insert_statement
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class _Compiled:
    sql: str
    values_of: Callable[[dict[str, Any]], tuple]  # a row's values, in the order of the statement's parameters
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, its type's processor), where one exists


_compiled: "WeakKeyDictionary[Dialect, dict[tuple[Table, tuple[str, ...]], _Compiled]]" = WeakKeyDictionary()


def _compile(dialect: Dialect, table: Table, keys: tuple[str, ...]) -> _Compiled:
    by_statement = _compiled.setdefault(dialect, {})
    compiled = by_statement.get((table, keys))
    if compiled is None:
        statement = insert_statement(table).compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        if not dialect.positional or statement.positiontup is None:
            raise NotImplementedError(f"{dialect.name}: a driver with positional parameters is expected")
        if statement.insert_prefetch:
            raise ValueError(f"{table.name}: every column with a default computed per row must be given")
        keys_in_order = [statement.binds[name].key for name in statement.positiontup]
        if unknown := set(keys_in_order) - set(keys):
            raise ValueError(f"{table.name}: no value for {sorted(unknown)}")
        processors: dict[str, Callable[[Any], Any]] = {}
        for name, process in statement._bind_processors.items():
            if not callable(process):  # a tuple type's processors, one per element: no column has one
                raise NotImplementedError(f"{table.name}.{name}: a column of a tuple type")
            processors[name] = process
        compiled = by_statement[(table, keys)] = _Compiled(
            statement.string,
            itemgetter(*keys_in_order) if len(keys_in_order) > 1 else lambda row: (row[keys_in_order[0]],),
            tuple(
                (position, processors[name])
                for position, name in enumerate(statement.positiontup)
                if name in processors
            ),
        )
    return compiled


async def insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert these rows (each with the same keys, those of the first) in the session's transaction."""
    if not rows:
        return
    connection = await session.connection()
    compiled = _compile(connection.dialect, table, tuple(rows[0]))
    values_of, processors = compiled.values_of, compiled.processors
    values = []
    for row in rows:
        row_values = list(values_of(row))
        for position, process in processors:
            row_values[position] = process(row_values[position])
        values.append(tuple(row_values))
    await connection.exec_driver_sql(compiled.sql, values)
