"""A short pitch for a customer's recommendations, written by an LLM and grounded on them.

An LCEL chain (prompt | chat model | pydantic parser) asked to write about the retrieved shows
only; any show it names outside that set is dropped, and a pitch left with none is refused.

Honesty: every show comes with the true reason it is recommended (`PitchShow.reason`: "Because
you enjoyed jazz" only for a jazz show the customer's jazz bookings led to, "Similar to Blue
Train" for a show the embeddings put nearest to that booking, "Coming up" otherwise). The
template groups the shows under their reasons; the model is told the reasons, and a pitch that
names a show in a sentence about a liked genre the show is not of ("Because you enjoyed jazz:
Swan Lake") is refused like an ungrounded one.

Every call is bounded by a timeout, and a circuit breaker stops calling a failing model for a
while; with Gemini, each API key has a breaker of its own and the keys are used in turn
(recommender/gemini.py). Whenever the model is absent (no Google API key), slow, failing or
off-script, a template writes the pitch instead: the answer never depends on the model.

Gemini itself (ChatGoogleGenerativeAI) is not exercised by our tests (no network, no key); the
chain, the grounding, the honesty check, the key rotation, the timeout, the breakers and the
fallback are, with LangChain's fake chat models.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, Field

from recommender.breaker import CircuitBreaker
from recommender.gemini import KeyRotation, google_api_keys
from recommender.settings import RecommenderSettings

__all__ = ["CircuitBreaker", "Pitch", "PitchShow", "PitchWriter", "template_pitch"]

log = logging.getLogger(__name__)

COMING_UP = "Coming up"


class PitchDraft(BaseModel):
    """What the model must answer (as JSON)."""

    text: str = Field(description="two or three sentences inviting the customer to the shows")
    shows: list[str] = Field(description="the exact titles of the shows the text names")


@dataclass(frozen=True)
class Pitch:
    text: str
    shows: list[str]
    source: Literal["llm", "template"]


@dataclass(frozen=True)
class PitchShow:
    title: str
    category: str
    venue: str
    reason: str = ""  # why it is recommended; "" lets `reason_for` say it from the liked genres


def because_you_enjoyed(category: str) -> str:
    return f"Because you enjoyed {category}"


def reason_for(show: PitchShow, liked: Sequence[str]) -> str:
    """The show's own reason, else the one that is true from the genres the customer liked."""
    if show.reason:
        return show.reason
    if show.category.casefold() in {genre.casefold() for genre in liked}:
        return because_you_enjoyed(show.category)
    return COMING_UP


PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You write short, warm invitations for a ticketing site. Name ONLY shows from the "
            "list given; never invent shows, dates or prices. Each show comes with the reason it "
            "is recommended: give a show only its own reason, and never say the customer "
            "enjoyed a genre when naming a show of another genre. Answer with JSON only.\n"
            "{format_instructions}",
        ),
        ("human", "The customer liked: {liked}.\nShows to recommend:\n{shows}"),
    ]
)


def _names(titles: Sequence[str]) -> str:
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def template_pitch(shows: Sequence[PitchShow], liked: Sequence[str]) -> Pitch:
    """The fallback: always grounded, never clever; the shows grouped under their reasons."""
    if not shows:
        return Pitch("Nothing new for you yet: check back soon.", [], "template")
    picked = list(shows[:3])
    grouped: dict[str, list[str]] = {}
    for show in picked:
        grouped.setdefault(reason_for(show, liked), []).append(show.title)
    parts = [f"{reason}: {_names(titles)}." for reason, titles in grouped.items()]
    text = " ".join([*parts, "Tickets are on sale now."])
    return Pitch(text, [s.title for s in picked], "template")


def misattributed(text: str, shows: Sequence[PitchShow], liked: Sequence[str]) -> list[str]:
    """The shows `text` names in a sentence that also names a liked genre they are not of."""
    wrong: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text.casefold()):
        named = [s for s in shows if s.title.casefold() in sentence]
        rest = sentence
        for show in named:  # a title's own words ("Jazz Hands Revue") name no genre
            rest = rest.replace(show.title.casefold(), " ")
        genres = {g.casefold() for g in liked if re.search(rf"\b{re.escape(g.casefold())}\b", rest)}
        wrong += [s.title for s in named if genres and s.category.casefold() not in genres]
    return wrong


ChatModels = BaseChatModel | Callable[[], BaseChatModel] | KeyRotation[BaseChatModel]


class PitchWriter:
    def __init__(
        self,
        model: ChatModels | None,
        timeout: float = 4.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """`model`: a chat model, a factory of one (built on first use), one model per API key
        used in turn (`KeyRotation`), or None (the template only)."""
        self._models = model
        self._model: BaseChatModel | None = None
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker()
        self.parser = PydanticOutputParser(pydantic_object=PitchDraft)
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pitch")

    @classmethod
    def from_env(
        cls, timeout: float = 4.0, settings: RecommenderSettings | None = None
    ) -> PitchWriter:
        """Gemini over the Google API keys set (GOOGLE_API_KEYS or GOOGLE_API_KEY), clients
        built lazily; without a key, the template only."""
        keys = google_api_keys()
        if not keys:
            return cls(None, timeout)
        tuning = settings or RecommenderSettings()

        def gemini(key: str) -> BaseChatModel:
            from langchain_google_genai import ChatGoogleGenerativeAI

            return ChatGoogleGenerativeAI(
                model=tuning.chat_model, google_api_key=key, timeout=timeout, max_retries=0
            )

        factories = [partial(gemini, key) for key in keys]
        return cls(KeyRotation(factories, tuning.key_cooldown_seconds), timeout)

    def write(self, shows: Sequence[PitchShow], liked: Sequence[str]) -> Pitch:
        if self._models is None or not shows or not self.breaker.allows():
            return template_pitch(shows, liked)
        try:
            draft = self._draft(shows, liked)
            pitch = self._grounded(draft, shows, liked)
        except Exception as error:  # timeout, model or parsing error, ungrounded answer
            log.warning("pitch: falling back to the template: %r", error)
            self.breaker.failed()
            return template_pitch(shows, liked)
        self.breaker.succeeded()
        return pitch

    def _ask(self, inputs: dict[str, str]) -> PitchDraft:
        """The chain: the prompt to the model (the next key's, if several), its answer parsed."""

        def ask(model: BaseChatModel) -> BaseMessage:
            answer: BaseMessage = (PROMPT | model).invoke(inputs)
            return answer

        models = self._models
        if isinstance(models, KeyRotation):  # a key that fails is rested; the next one answers
            answer: PitchDraft = self.parser.invoke(models.call(ask))
            return answer
        draft: PitchDraft = self.parser.invoke(ask(self._single_model()))
        return draft

    def _single_model(self) -> BaseChatModel:
        if self._model is None:
            found = self._models
            self._model = found if isinstance(found, BaseChatModel) else found()  # type: ignore[misc,operator]
        return self._model

    def _draft(self, shows: Sequence[PitchShow], liked: Sequence[str]) -> PitchDraft:
        listing = "\n".join(
            f"- {s.title} ({s.category}, at {s.venue}); reason: {reason_for(s, liked)}"
            for s in shows
        )
        inputs = {
            "format_instructions": self.parser.get_format_instructions(),
            "liked": ", ".join(liked) or "nothing yet",
            "shows": listing,
        }
        future = self._pool.submit(self._ask, inputs)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no pitch within {self.timeout}s") from None

    @staticmethod
    def _grounded(draft: PitchDraft, shows: Sequence[PitchShow], liked: Sequence[str]) -> Pitch:
        known = {s.title.casefold(): s.title for s in shows}
        kept = [known[t.casefold()] for t in draft.shows if t.casefold() in known]
        dropped = [t for t in draft.shows if t.casefold() not in known]
        if dropped:
            log.warning("pitch: dropped shows outside the recommendations: %s", dropped)
        if not kept or any(t in draft.text for t in dropped):
            raise ValueError(f"pitch not grounded on the recommendations (named {dropped})")
        wrong = misattributed(draft.text, shows, liked)
        if wrong:
            raise ValueError(f"pitch gives {wrong} a reason that is not theirs")
        return Pitch(draft.text.strip(), kept, "llm")
