"""Issue 17: the pitch gives every show its true reason, and Gemini runs over several API keys
in turn, each behind a breaker of its own. The real chain code (recommender/pitch.py,
recommender/gemini.py, recommender/embedder.py) driven by LangChain's fake chat models and fake
embeddings, which fail per key where a test wants a key to fail."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
)

from recommender.embedder import (
    DIMENSION,
    EmbeddingError,
    GeminiEmbedder,
    OfflineEmbedder,
    ShowText,
    embedder_from_env,
)
from recommender.gemini import AllKeysFailedError, KeyRotation, google_api_keys
from recommender.pitch import PitchShow, PitchWriter, misattributed, template_pitch
from recommender.runner import digest, same_record

JAZZ = PitchShow("Blue Train Revisited", "jazz", "Oak Room", "Because you enjoyed jazz")
BALLET = PitchShow("Swan Lake", "ballet", "Opera House", "Similar to Smoky Piano Trio")
COMEDY = PitchShow("Laugh Riot", "comedy", "Civic Arena", "Coming up")
MIXED = [JAZZ, BALLET, COMEDY]


def answer(text: str, shows: list[str]) -> str:
    return json.dumps({"text": text, "shows": shows})


def grouped(text: str) -> dict[str, list[str]]:
    """ "Reason: A, B and C." sentences of a template pitch, as {reason: titles}."""
    found = {}
    for reason, names in re.findall(r"([A-Z][^:.]*): ([^.]+)\.", text):
        found[reason] = re.split(r", | and ", names)
    return found


# --- honesty ------------------------------------------------------------------------------


def test_the_template_names_each_show_under_its_own_reason():
    """The seed said "Because you enjoyed jazz: Blue Train Revisited, Swan Lake and Laugh Riot"."""
    pitch = template_pitch(MIXED, ["jazz"])

    assert pitch.text == (
        "Because you enjoyed jazz: Blue Train Revisited. Similar to Smoky Piano Trio: Swan Lake."
        " Coming up: Laugh Riot. Tickets are on sale now."
    )
    assert pitch.shows == ["Blue Train Revisited", "Swan Lake", "Laugh Riot"]


def test_without_reasons_given_only_shows_of_a_liked_genre_are_said_to_be_liked():
    shows = [PitchShow(s.title, s.category, s.venue) for s in [BALLET, JAZZ, COMEDY]]
    pitch = template_pitch(shows, ["jazz", "rock"])

    assert grouped(pitch.text) == {
        "Coming up": ["Swan Lake", "Laugh Riot"],
        "Because you enjoyed jazz": ["Blue Train Revisited"],
    }


def test_a_model_giving_a_ballet_the_jazz_fans_reason_is_refused_for_the_template():
    model = FakeListChatModel(
        responses=[
            answer(
                "Because you enjoyed jazz: Blue Train Revisited, Swan Lake and Laugh Riot!",
                [s.title for s in MIXED],
            )
        ]
    )
    pitch = PitchWriter(model).write(MIXED, ["jazz"])

    assert pitch.source == "template"
    assert grouped(pitch.text)["Because you enjoyed jazz"] == ["Blue Train Revisited"]


def test_a_model_giving_each_show_its_own_reason_is_kept():
    text = (
        "More jazz for you: Blue Train Revisited. If you liked Smoky Piano Trio, Swan Lake is"
        " close to it. And Laugh Riot is coming up."
    )
    model = FakeListChatModel(responses=[answer(text, [s.title for s in MIXED])])

    pitch = PitchWriter(model).write(MIXED, ["jazz"])

    assert pitch.source == "llm" and pitch.text == text


def test_the_model_is_told_each_shows_reason():
    seen: list[str] = []

    class Listening(FakeListChatModel):
        def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
            seen.append(str(messages[-1].content))
            return answer("Blue Train Revisited awaits.", ["Blue Train Revisited"])

    PitchWriter(Listening(responses=["unused"])).write(MIXED, ["jazz"])

    assert "- Swan Lake (ballet, at Opera House); reason: Similar to Smoky Piano Trio" in seen[0]
    assert "- Blue Train Revisited (jazz, at Oak Room); reason: Because you enjoyed jazz" in seen[0]


def test_a_genre_word_inside_a_title_is_no_claim():
    revue = PitchShow("Jazz Hands Revue", "comedy", "Civic Arena", "Coming up")
    assert misattributed("Laugh along at Jazz Hands Revue.", [revue], ["jazz"]) == []
    assert misattributed("For jazz lovers: Jazz Hands Revue.", [revue], ["jazz"]) == [
        "Jazz Hands Revue"
    ]


# --- keys in turn, a breaker per key --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class KeyModel(FakeListChatModel):
    """The chat model one API key reaches: counts its calls; `down` ones fail (quota...)."""

    down: bool = False
    calls: int = 0

    def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.down:
            raise FakeListChatModelError("429 RESOURCE_EXHAUSTED")
        return answer("Blue Train Revisited awaits.", ["Blue Train Revisited"])


def returning(value: Any) -> Callable[[], Any]:
    return lambda: value


def rotation(models: list[KeyModel], clock: Clock) -> KeyRotation[BaseChatModel]:
    return KeyRotation([returning(m) for m in models], cooldown=60, clock=clock)


def test_the_keys_are_used_in_turn():
    models = [KeyModel(responses=["unused"]) for _ in range(3)]
    writer = PitchWriter(rotation(models, Clock()))

    for _ in range(6):
        assert writer.write(MIXED, ["jazz"]).source == "llm"

    assert [m.calls for m in models] == [2, 2, 2]


def test_a_failing_key_is_skipped_for_a_while_and_the_next_one_answers():
    clock = Clock()
    models = [KeyModel(responses=["unused"], down=True), *(KeyModel(responses=["u"]) for _ in "ab")]
    writer = PitchWriter(rotation(models, clock))

    pitches = [writer.write(MIXED, ["jazz"]) for _ in range(6)]

    assert {p.source for p in pitches} == {"llm"}  # the customer never saw the bad key
    assert models[0].calls == 1  # tried once, then rested
    assert models[1].calls + models[2].calls == 6

    clock.now = 61  # rested long enough: tried once again, still failing, rested again
    assert writer.write(MIXED, ["jazz"]).source == "llm"
    writer.write(MIXED, ["jazz"])
    writer.write(MIXED, ["jazz"])
    assert models[0].calls == 2

    models[0].down = False
    clock.now = 122
    for _ in range(3):
        writer.write(MIXED, ["jazz"])
    assert models[0].calls == 3  # back in turn


def test_with_every_key_failing_the_template_writes_the_pitch():
    models = [KeyModel(responses=["unused"], down=True) for _ in range(3)]
    writer = PitchWriter(rotation(models, Clock()))

    assert writer.write(MIXED, ["jazz"]).source == "template"
    assert [m.calls for m in models] == [1, 1, 1]
    assert writer.write(MIXED, ["jazz"]).source == "template"  # all resting: none is called
    assert [m.calls for m in models] == [1, 1, 1]


class KeyEmbeddings(DeterministicFakeEmbedding):
    """The embedding model one key reaches (Gemini's `output_dimensionality` accepted)."""

    down: bool = False
    calls: int = 0

    def _get_embedding(self, seed: int) -> list[float]:  # LangChain's draws from numpy's rng
        return [random.Random(seed).uniform(-1, 1) for _ in range(self.size)]

    def embed_documents(
        self, texts: list[str], output_dimensionality: int | None = None
    ) -> list[list[float]]:
        self.calls += 1
        if self.down:
            raise RuntimeError("403 API key not valid")
        return super().embed_documents(texts)


def test_embeddings_go_to_the_next_key_when_one_fails():
    keys = [KeyEmbeddings(size=DIMENSION + 8, down=True), KeyEmbeddings(size=DIMENSION + 8)]
    clients: KeyRotation[Any] = KeyRotation([returning(k) for k in keys], 60, Clock())
    embedder = GeminiEmbedder("models/test-embedding", clients=clients)
    show = ShowText("Blue Train Revisited", "hard bop", "jazz", "Oak Room")

    first, second = embedder.embed([show]), embedder.embed([show])

    assert first == second and len(first[0]) == DIMENSION
    assert abs(sum(x * x for x in first[0]) - 1.0) < 1e-9  # cut, then normalised
    assert [k.calls for k in keys] == [1, 2]
    assert embedder.model_name == f"gemini:models/test-embedding:{DIMENSION}"

    keys[1].down = True
    with pytest.raises(EmbeddingError):  # the show stays pending
        embedder.embed([show])


def test_a_rotation_with_every_key_resting_says_so():
    clients: KeyRotation[Any] = KeyRotation([lambda: None], 60, Clock())
    with pytest.raises(AllKeysFailedError):
        clients.call(lambda _client: 1 / 0)
    with pytest.raises(AllKeysFailedError, match="resting"):
        clients.call(lambda _client: 1)


# --- configuration ----------------------------------------------------------------------


def test_keys_come_from_google_api_keys_else_google_api_key():
    assert google_api_keys({"GOOGLE_API_KEYS": " k1, k2 ,,k3,k1", "GOOGLE_API_KEY": "k0"}) == [
        "k1",
        "k2",
        "k3",
    ]
    assert google_api_keys({"GOOGLE_API_KEY": "k0"}) == ["k0"]
    assert google_api_keys({"GOOGLE_API_KEYS": " , "}) == []
    assert google_api_keys({}) == []


def test_the_models_and_keys_of_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GOOGLE_API_KEYS", "key-one,key-two,key-three")
    monkeypatch.setenv("TICKETBLITZ_REC_CHAT_MODEL", "gemini-test-chat")
    monkeypatch.setenv("TICKETBLITZ_REC_EMBEDDING_MODEL", "models/test-embedding")

    writer = PitchWriter.from_env(timeout=1.0)
    models = writer._models
    assert isinstance(models, KeyRotation) and len(models) == 3
    second = models._client(1)  # built here, no network: Gemini is called only on use
    assert second.model == "gemini-test-chat"  # type: ignore[attr-defined]
    assert second.google_api_key.get_secret_value() == "key-two"  # type: ignore[attr-defined]
    assert embedder_from_env().model_name == f"gemini:models/test-embedding:{DIMENSION}"

    monkeypatch.delenv("GOOGLE_API_KEYS")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    assert isinstance(embedder_from_env(), OfflineEmbedder)
    assert PitchWriter.from_env().write(MIXED, ["jazz"]).source == "template"


# --- restarts -------------------------------------------------------------------------------


def test_a_record_published_again_is_the_same_record():
    """The relay seals people's data afresh each time it publishes an event: the bytes differ,
    the event does not (the recommender compares records across a broker restart)."""
    first = json.dumps({"event_id": "e-1", "payload": {"email": "pd1:abc"}}).encode()
    again = json.dumps({"event_id": "e-1", "payload": {"email": "pd1:xyz"}}).encode()
    other = json.dumps({"event_id": "e-2", "payload": {"email": "pd1:abc"}}).encode()

    assert digest(first) == digest(again) != digest(other)
    assert digest(b"not json") != digest(b"not json either")
    assert same_record(first, digest(again))
    assert not same_record(other, digest(first))
