"""`audit export`: the log for external tools, streamed page by page as JSON lines or CSV.

One event per line or row: position, stream_id, version, time, type and payload (the event's
data as this version of TicketBlitz reads it, i.e. old events upcast; JSON in CSV's column).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, Literal, TextIO

from audit.records import head_position, payload_of, type_name
from infra.decoding import Decoder, read_rows
from infra.event_store import PostgresEventStore

Format = Literal["jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv")
COLUMNS = ("position", "stream_id", "version", "time", "type", "payload")


def exported(
    store: PostgresEventStore, first: int = 1, last: int | None = None, page_size: int = 5000
) -> Iterator[dict[str, Any]]:
    """The events with first <= position <= last (last None: the head when asked)."""
    decode = Decoder(store.app.mapper).event
    with store.connection() as conn:
        upto = head_position(conn) if last is None else last
        after = max(first, 1) - 1
        while after < upto:
            rows = read_rows(conn, after, page_size, upto)
            for row in rows:
                event = decode(row)
                yield {
                    "position": row[0],
                    "stream_id": str(row[1]),
                    "version": row[2],
                    "time": event.timestamp.isoformat(),
                    "type": type_name(event),
                    "payload": payload_of(event),
                }
            if len(rows) < page_size:
                break
            after = rows[-1][0]


def write_export(events: Iterator[dict[str, Any]], out: TextIO, fmt: Format) -> int:
    """Write the events in `fmt`; returns how many."""
    count = 0
    if fmt == "jsonl":
        for item in events:
            out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
        return count
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for item in events:
        payload = json.dumps(item["payload"], ensure_ascii=False, separators=(",", ":"))
        writer.writerow([*(item[c] for c in COLUMNS[:-1]), payload])
        count += 1
    return count
