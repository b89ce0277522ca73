"""Read-model tables and their set-based writes: a page's changes are gathered per table in
Python and written with a handful of statements (COPY, UPDATE ... FROM unnest), never one
round trip per event.

What reaches PostgreSQL is made storable here, whatever an event says (an old log, a command
validated less strictly than today, a bug): text loses what a text column cannot hold (NUL
and lone surrogates become U+FFFD) and numbers are held within their column's range (logged),
so one odd event can never stop a read model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

REPLACEMENT = "\ufffd"
INTEGER_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}

Key = Any  # a column value, or a tuple of them for a composite key
Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A table of a read model; created in the schema of a projection's generation."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type) in order; "NOT NULL" etc. allowed
    key: tuple[str, ...]
    indexes: tuple[str, ...] = ()  # index bodies, e.g. "(starts_at, show_id)"
    extra: tuple[str, ...] = ()  # more column definitions that are never written (generated)

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def base_type(self, column: str) -> str:
        for name, declared in self.columns:
            if name == column:
                return declared.split()[0]
        raise KeyError(column)

    def ddl(self, schema: str) -> list[sql.Composed]:
        definitions = [f"{name} {declared}" for name, declared in self.columns]
        definitions += list(self.extra)
        definitions.append(f"PRIMARY KEY ({', '.join(self.key)})")
        statements = [
            sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
                sql.Identifier(schema), sql.Identifier(self.name), sql.SQL(", ".join(definitions))
            )
        ]
        for number, body in enumerate(self.indexes, start=1):
            statements.append(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} {}").format(
                    sql.Identifier(f"{self.name}_{number}"),
                    sql.Identifier(schema),
                    sql.Identifier(self.name),
                    sql.SQL(body),
                )
            )
        return statements

    @cached_property
    def guards(self) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        """(index, make storable) of the columns whose values may need it."""
        found = []
        for index, name in enumerate(self.column_names):
            guard = _guard(self.base_type(name))
            if guard is not None:
                found.append((index, guard))
        return tuple(found)

    @cached_property
    def key_getter(self) -> Callable[[Mapping[str, Any]], Key]:
        """The key of a row: a value, or a tuple for a composite key."""
        return itemgetter(*self.key)


def storable_text(value: str) -> str:
    """`value` without what PostgreSQL text cannot hold: NUL and lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = "".join(REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in value)
    return value


def _text(value: Any) -> Any:
    return storable_text(value) if type(value) is str else value


def storable_json(value: Any) -> Any:
    """A JSON document whose strings (keys too) PostgreSQL's jsonb can hold."""
    if type(value) is str:
        return storable_text(value)
    if isinstance(value, dict):
        return {_text(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


def _integer(base: str) -> Callable[[Any], Any]:
    low, high = INTEGER_RANGES[base]

    def within(value: Any) -> Any:
        if type(value) is int and not low <= value <= high:
            log.warning("a value out of the %s range was stored as its bound: %s", base, value)
            return low if value < low else high
        return value

    return within


def _guard(base: str) -> Callable[[Any], Any] | None:
    if base == "text":
        return _text
    if base == "jsonb":
        return storable_json
    if base in INTEGER_RANGES:
        return _integer(base)
    return None


def _key_values(table: Table, keys: Sequence[Key]) -> list[list[Any]]:
    """Column-wise key values, for unnest()."""
    if len(table.key) == 1:
        return [list(keys)]
    return [[k[i] for k in keys] for i in range(len(table.key))]


def _param(table: Table, column: str, values: list[Any]) -> tuple[sql.Composable, list[Any]]:
    """An array parameter for unnest(), jsonb travelling as text (arrays of json are awkward)."""
    base = table.base_type(column)
    if base == "jsonb":
        dumped = [None if v is None else json.dumps(storable_json(v)) for v in values]
        return sql.SQL("%s::text[]"), dumped
    guard = _guard(base)
    if guard is not None:
        values = [guard(v) for v in values]
    return sql.SQL("%s::{}[]").format(sql.SQL(base)), values


def _cast(table: Table, column: str, ref: sql.Composable) -> sql.Composable:
    return sql.SQL("{}::jsonb").format(ref) if table.base_type(column) == "jsonb" else ref


@dataclass
class PageRows:
    """One table's changes during one page: inserts, updates, counter increments, deletes.

    `get` sees the page's own effects, so later events of the page build on earlier ones.
    Rows needed from earlier pages are fetched in bulk with `load` before the page is applied.
    """

    table: Table
    inserts: dict[Key, Row] = field(default_factory=dict)
    updates: dict[Key, Row] = field(default_factory=dict)
    increments: dict[Key, dict[str, int]] = field(default_factory=dict)
    deletes: set[Key] = field(default_factory=set)
    loaded: dict[Key, Row] = field(default_factory=dict)

    def insert(self, row: Row) -> None:
        self.inserts[self.table.key_getter(row)] = row

    def get(self, key: Key) -> Row | None:
        row = self.inserts.get(key)
        if row is None and self.loaded:
            return self.loaded.get(key)
        return row

    # set/add are the hot path of every page: as few dict lookups as possible.

    def set(self, key: Key, **values: Any) -> None:
        row = self.inserts.get(key)
        if row is not None:
            row.update(values)
            return
        if self.deletes and key in self.deletes:
            return
        pending = self.updates.setdefault(key, values)
        if pending is not values:
            pending.update(values)
        if self.loaded:
            row = self.loaded.get(key)
            if row is not None:
                row.update(values)

    def add(self, key: Key, **deltas: int) -> None:
        row = self.inserts.get(key)
        if row is not None:
            for column, delta in deltas.items():
                row[column] = (row[column] or 0) + delta
            return
        if self.deletes and key in self.deletes:
            return
        pending = self.increments.setdefault(key, deltas)
        if pending is not deltas:
            for column, delta in deltas.items():
                pending[column] = pending.get(column, 0) + delta
        if self.loaded:
            row = self.loaded.get(key)
            if row is not None:
                for column, delta in deltas.items():
                    row[column] = (row[column] or 0) + delta

    def delete(self, key: Key) -> None:
        existed = self.inserts.pop(key, None) is None
        self.updates.pop(key, None)
        self.increments.pop(key, None)
        self.loaded.pop(key, None)
        if existed:
            self.deletes.add(key)

    def load(self, conn: psycopg.Connection[Any], schema: str, keys: Iterable[Key]) -> None:
        """Fetch the rows of these keys (single-column keys) that the page has not seen yet."""
        assert len(self.table.key) == 1, "bulk loads by a single-column key only"
        wanted = [k for k in set(keys) if k not in self.inserts and k not in self.loaded]
        if not wanted:
            return
        column = self.table.key[0]
        names = self.table.column_names
        query = sql.SQL("SELECT {} FROM {}.{} WHERE {} = ANY({})").format(
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.Identifier(schema),
            sql.Identifier(self.table.name),
            sql.Identifier(column),
            _param(self.table, column, wanted)[0],
        )
        for values in conn.execute(query, (wanted,)).fetchall():
            row = dict(zip(names, values, strict=True))
            self.loaded[row[column]] = row

    def flush(self, conn: psycopg.Connection[Any], schema: str) -> None:
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(self.table.name))
        if self.deletes:
            self._delete(conn, target)
        if self.inserts:
            self._copy(conn, target)
        for columns, keyed in _grouped(self.updates).items():
            self._update(conn, target, columns, keyed, increment=False)
        for columns, keyed in _grouped(self.increments).items():
            self._update(conn, target, columns, keyed, increment=True)

    def _delete(self, conn: psycopg.Connection[Any], target: sql.Composable) -> None:
        keys = list(self.deletes)
        params = [
            _param(self.table, k, v)
            for k, v in zip(self.table.key, _key_values(self.table, keys), strict=True)
        ]
        names = [sql.Identifier(k) for k in self.table.key]
        query = sql.SQL("DELETE FROM {} t USING unnest({}) AS v({}) WHERE {}").format(
            target,
            sql.SQL(", ").join(p for p, _ in params),
            sql.SQL(", ").join(names),
            sql.SQL(" AND ").join(sql.SQL("t.{0} = v.{0}").format(n) for n in names),
        )
        conn.execute(query, [values for _, values in params])

    def _copy(self, conn: psycopg.Connection[Any], target: sql.Composable) -> None:
        """Binary COPY: the cheapest way in for many rows (jsonb columns take dicts/lists)."""
        names = self.table.column_names
        values = itemgetter(*names)
        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, names))
        )
        guards = self.table.guards
        with conn.cursor().copy(query) as copy:
            copy.set_types([self.table.base_type(n) for n in names])
            write = copy.write_row
            for row in self.inserts.values():
                out = list(values(row))
                for index, guard in guards:
                    out[index] = guard(out[index])
                write(out)

    def _update(
        self,
        conn: psycopg.Connection[Any],
        target: sql.Composable,
        columns: tuple[str, ...],
        keyed: dict[Key, Row],
        increment: bool,
    ) -> None:
        keys = list(keyed)
        key_params = [
            _param(self.table, k, v)
            for k, v in zip(self.table.key, _key_values(self.table, keys), strict=True)
        ]
        value_params = [_param(self.table, c, [keyed[k][c] for k in keys]) for c in columns]
        params = key_params + value_params
        names = [*self.table.key, *columns]
        assignments = [
            _increment(self.table, c)
            if increment
            else sql.SQL("{} = {}").format(
                sql.Identifier(c), _cast(self.table, c, sql.SQL("v.{}").format(sql.Identifier(c)))
            )
            for c in columns
        ]
        query = sql.SQL("UPDATE {} t SET {} FROM unnest({}) AS v({}) WHERE {}").format(
            target,
            sql.SQL(", ").join(assignments),
            sql.SQL(", ").join(p for p, _ in params),
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(" AND ").join(
                sql.SQL("t.{0} = v.{0}").format(sql.Identifier(k)) for k in self.table.key
            ),
        )
        conn.execute(query, [values for _, values in params])


def _increment(table: Table, column: str) -> sql.Composable:
    """`column = t.column + v.column`, held within the column's range (numeric sums
    cannot overflow)."""
    name = sql.Identifier(column)
    bounds = INTEGER_RANGES.get(table.base_type(column))
    if bounds is None:
        return sql.SQL("{0} = t.{0} + v.{0}").format(name)
    return sql.SQL("{0} = LEAST(GREATEST(t.{0}::numeric + v.{0}, {1}), {2})").format(
        name, sql.Literal(bounds[0]), sql.Literal(bounds[1])
    )


def _grouped(changes: Mapping[Key, Mapping[str, Any]]) -> dict[tuple[str, ...], dict[Key, Row]]:
    """Rows changed in the same columns go together into one statement."""
    groups: dict[tuple[str, ...], dict[Key, Row]] = {}
    for key, values in changes.items():
        if values:
            groups.setdefault(tuple(values), {})[key] = dict(values)
    return groups
