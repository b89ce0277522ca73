"""The revenue `audit verify` compares the log with: the sales read model (`read.show_sales`,
projections/sales.py), read with its position in one snapshot."""

from __future__ import annotations

from typing import Any

import psycopg

from audit.invariants import Revenue, RevenueSnapshot, RevenueUnavailableError
from projections.base import READ_SCHEMA
from projections.positions import active_positions
from projections.registry import SALES


class SalesReadModel:
    """Paid and refunded cents per show as the active sales read model has them."""

    source = "the sales read model"

    def snapshot(self, conn: psycopg.Connection[Any]) -> RevenueSnapshot:
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                found = conn.execute(
                    "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
                    (f"{READ_SCHEMA}.show_sales", f"{READ_SCHEMA}.generations"),
                ).fetchone()
                if found is None or not all(found):
                    raise RevenueUnavailableError("no sales read model in this database")
                position = active_positions(conn).get(SALES)
                if position is None:
                    raise RevenueUnavailableError("the sales read model has no active generation")
                rows = conn.execute(
                    f"SELECT show_id, paid_cents, refunded_cents FROM {READ_SCHEMA}.show_sales"
                ).fetchall()
        except psycopg.Error as error:
            why = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RevenueUnavailableError(f"the sales read model cannot be read: {why}") from None
        return RevenueSnapshot(
            self.source,
            position,
            {show_id: Revenue(int(paid), int(refunded)) for show_id, paid, refunded in rows},
        )
