"""The pitch chain with langchain's fake chat models: grounded answers pass, anything else
falls back to the template, and a failing model is left alone for a while."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
)

from recommender.pitch import CircuitBreaker, PitchShow, PitchWriter

SHOWS = [
    PitchShow("Smoky Piano Trio", "jazz", "Oak Room"),
    PitchShow("Latin Jazz Fiesta", "jazz", "Civic Arena"),
    PitchShow("Vocal Jazz Evening", "jazz", "Riverside Hall"),
]


def answer(text: str, shows: list[str]) -> str:
    return json.dumps({"text": text, "shows": shows})


class BrokenChatModel(FakeListChatModel):
    calls: int = 0

    def _call(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        raise FakeListChatModelError("the model is down")


def test_a_grounded_pitch_from_the_model_is_kept():
    model = FakeListChatModel(
        responses=[answer("Brushes and bass at the Smoky Piano Trio.", ["smoky piano trio"])]
    )
    pitch = PitchWriter(model).write(SHOWS, ["jazz"])
    assert pitch.source == "llm"
    assert pitch.text == "Brushes and bass at the Smoky Piano Trio."
    assert pitch.shows == ["Smoky Piano Trio"]


def test_shows_outside_the_recommendations_are_dropped():
    model = FakeListChatModel(
        responses=[answer("Try the Latin Jazz Fiesta!", ["Latin Jazz Fiesta", "Cats"])]
    )
    pitch = PitchWriter(model).write(SHOWS, ["jazz"])
    assert pitch.source == "llm" and pitch.shows == ["Latin Jazz Fiesta"]


def test_a_pitch_naming_an_invented_show_falls_back_to_the_template():
    model = FakeListChatModel(responses=[answer("Do not miss Hamilton!", ["Hamilton"])])
    pitch = PitchWriter(model).write(SHOWS, ["jazz"])
    assert pitch.source == "template"
    assert pitch.shows == [s.title for s in SHOWS]
    assert pitch.text.startswith("Because you enjoyed jazz: Smoky Piano Trio, Latin Jazz")


def test_garbage_and_errors_fall_back_to_the_template():
    assert PitchWriter(FakeListChatModel(responses=["no JSON"])).write(SHOWS, []).source == (
        "template"
    )
    pitch = PitchWriter(BrokenChatModel(responses=["unused"])).write(SHOWS, ["jazz"])
    assert pitch.source == "template" and pitch.shows == [s.title for s in SHOWS]


def test_a_slow_model_is_cut_off_by_the_timeout():
    slow = FakeListChatModel(responses=[answer("Late.", ["Smoky Piano Trio"])], sleep=2.0)
    pitch = PitchWriter(slow, timeout=0.1).write(SHOWS, ["jazz"])
    assert pitch.source == "template"


def test_the_breaker_stops_calling_a_failing_model_then_tries_again():
    now = [0.0]
    model = BrokenChatModel(responses=["unused"])
    writer = PitchWriter(
        model, breaker=CircuitBreaker(threshold=2, cooldown=30, clock=lambda: now[0])
    )
    for _ in range(5):
        assert writer.write(SHOWS, ["jazz"]).source == "template"
    assert model.calls == 2 and writer.breaker.open
    now[0] = 31.0
    writer.write(SHOWS, ["jazz"])
    assert model.calls == 3 and writer.breaker.open  # half-open try failed: open again


def test_no_model_means_the_template():
    assert PitchWriter(None).write(SHOWS, ["jazz"]).source == "template"
    assert PitchWriter(None).write([], []).shows == []
