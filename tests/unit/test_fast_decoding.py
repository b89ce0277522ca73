"""The log readers' decoder (infra/decoding.py) reads every stored document exactly as the
application's own transcoder does, whichever parser it takes inside."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex

from infra.decoding import _FastTranscoder


def transcoder() -> JSONTranscoder:
    made = JSONTranscoder()
    made.register(UUIDAsHex())
    made.register(DatetimeAsISO())
    return made


TRANSCODER = transcoder()


@pytest.mark.parametrize(
    "document",
    [
        {"amount_cents": 10**30},  # beyond 64 bits: json keeps an int, orjson a float
        {"amount_cents": 2**64 - 1, "below": -(2**63)},
        {"ratio": 1.5, "nested": [{"n": 10**25}, 0.25]},
        {"id": uuid4(), "at": datetime(2026, 12, 5, 20, 0, tzinfo=UTC), "seats": ["A-1-1"]},
        {"text": "caf\u00e9 \u2603 \U0001f3b7", "empty": {}, "list": [[], [1, [2, [3]]]]},
        [10**20, {"x": 1e300}],
    ],
)
def test_the_fast_decoder_reads_what_the_transcoder_reads(document: object):
    data = TRANSCODER.encode(document)
    fast = _FastTranscoder(TRANSCODER, max_cached_uuids=100).decode(data)
    assert fast == TRANSCODER.decode(data)
    assert type(fast) is type(TRANSCODER.decode(data))
    if isinstance(document, dict) and "amount_cents" in document:
        assert type(fast["amount_cents"]) is int
