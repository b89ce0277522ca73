"""A short pitch for a customer's recommendations, written by an LLM and grounded on them.

An LCEL chain (prompt | chat model | pydantic parser) asked to write about the retrieved shows
only; any show it names outside that set is dropped, and a pitch left with none is refused.
Every call is bounded by a timeout, and a circuit breaker stops calling a failing model for a
while. Whenever the model is absent (no GOOGLE_API_KEY), slow, failing or off-script, a template
writes the pitch instead: the answer never depends on the model being up.

Gemini itself (ChatGoogleGenerativeAI) is not exercised by our tests (no network, no key); the
chain, the grounding, the timeout, the breaker and the fallback are, with langchain's fakes.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


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


PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You write short, warm invitations for a ticketing site. Name ONLY shows from the "
            "list given; never invent shows, dates or prices. Answer with JSON only.\n"
            "{format_instructions}",
        ),
        ("human", "The customer liked: {liked}.\nShows to recommend:\n{shows}"),
    ]
)


class CircuitBreaker:
    """Open after `threshold` failures in a row; half-open (one try) after `cooldown` s."""

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def allows(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at >= self.cooldown:
                self._opened_at = None  # half-open: the next failure opens it again
                self._failures = self.threshold - 1
                return True
            return False

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self.clock()

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None


def template_pitch(shows: Sequence[PitchShow], liked: Sequence[str]) -> Pitch:
    """The fallback: always grounded, never clever."""
    if not shows:
        return Pitch("Nothing new for you yet: check back soon.", [], "template")
    picked = list(shows[:3])
    titles = [s.title for s in picked]
    names = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
    taste = f"Because you enjoyed {', '.join(sorted(set(liked)))}: " if liked else "Coming up: "
    return Pitch(f"{taste}{names}. Tickets are on sale now.", titles, "template")


class PitchWriter:
    def __init__(
        self,
        model: BaseChatModel | Callable[[], BaseChatModel] | None,
        timeout: float = 4.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """`model`: a chat model, a factory of one (built on first use), or None (template)."""
        self._model_or_factory = model
        self._chain: Any = None
        self.timeout = timeout
        self.breaker = breaker or CircuitBreaker()
        self.parser = PydanticOutputParser(pydantic_object=PitchDraft)
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pitch")

    @classmethod
    def from_env(cls, timeout: float = 4.0) -> PitchWriter:
        """Gemini when GOOGLE_API_KEY is set (built lazily), else the template only."""
        if not os.environ.get("GOOGLE_API_KEY"):
            return cls(None, timeout)

        def gemini() -> BaseChatModel:
            from langchain_google_genai import ChatGoogleGenerativeAI

            return ChatGoogleGenerativeAI(model="gemini-2.5-flash", timeout=timeout, max_retries=0)

        return cls(gemini, timeout)

    def _get_chain(self) -> Any:
        if self._chain is None:
            found = self._model_or_factory
            model = found if isinstance(found, BaseChatModel) else found()  # type: ignore[misc]
            self._chain = PROMPT | model | self.parser
        return self._chain

    def write(self, shows: Sequence[PitchShow], liked: Sequence[str]) -> Pitch:
        if self._model_or_factory is None or not shows or not self.breaker.allows():
            return template_pitch(shows, liked)
        try:
            draft = self._draft(shows, liked)
            pitch = self._grounded(draft, shows)
        except Exception as error:  # timeout, model or parsing error, ungrounded answer
            log.warning("pitch: falling back to the template: %r", error)
            self.breaker.failed()
            return template_pitch(shows, liked)
        self.breaker.succeeded()
        return pitch

    def _draft(self, shows: Sequence[PitchShow], liked: Sequence[str]) -> PitchDraft:
        listing = "\n".join(f"- {s.title} ({s.category}, at {s.venue})" for s in shows)
        inputs = {
            "format_instructions": self.parser.get_format_instructions(),
            "liked": ", ".join(liked) or "nothing yet",
            "shows": listing,
        }
        future = self._pool.submit(self._get_chain().invoke, inputs)
        try:
            draft: PitchDraft = future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no pitch within {self.timeout}s") from None
        return draft

    @staticmethod
    def _grounded(draft: PitchDraft, shows: Sequence[PitchShow]) -> Pitch:
        known = {s.title.casefold(): s.title for s in shows}
        kept = [known[t.casefold()] for t in draft.shows if t.casefold() in known]
        dropped = [t for t in draft.shows if t.casefold() not in known]
        if dropped:
            log.warning("pitch: dropped shows outside the recommendations: %s", dropped)
        if not kept or any(t in draft.text for t in dropped):
            raise ValueError(f"pitch not grounded on the recommendations (named {dropped})")
        return Pitch(draft.text.strip(), kept, "llm")
