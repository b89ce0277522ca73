"""Show embeddings: an offline embedder (deterministic, no network) and a Gemini one.

The offline embedder hashes words and character trigrams of a show's title, description,
category and venue into a 256-dimensional vector (the signed hashing trick), L2-normalised. The
category is weighted most, so that genre dominates the cosine similarity; words weigh more than
trigrams, which only smooth over inflections ("jazz"/"jazzy").
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from recommender.gemini import (
    KEY_COOLDOWN_SECONDS,
    AllKeysFailedError,
    KeyRotation,
    google_api_keys,
)
from recommender.settings import RecommenderSettings

DIMENSION = 256

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {"a", "an", "and", "at", "by", "for", "from", "in", "into", "of", "on", "or", "the"}
    | {"to", "with", "two", "one", "night", "its", "it", "is", "as", "our", "their"}
)


@dataclass(frozen=True)
class ShowText:
    """What a show's embedding is computed from."""

    title: str
    description: str
    category: str
    venue: str


class Embedder(Protocol):
    model_name: str
    dimension: int

    def embed(self, shows: list[ShowText]) -> list[list[float]]:
        """One vector per show, in order; raises if the model cannot answer."""
        ...


class EmbeddingError(Exception):
    """The embedding model could not embed (the show is retried later)."""


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % DIMENSION, (1.0 if (value >> 63) & 1 else -1.0)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def _trigrams(word: str) -> list[str]:
    padded = f"<{word}>"
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


class OfflineEmbedder:
    """A hashed bag of words and character trigrams (see the module's docstring)."""

    model_name = "offline-hash-v1"
    dimension = DIMENSION

    # field -> (weight of its words, weight of its trigrams)
    WEIGHTS: dict[str, tuple[float, float]] = {
        "category": (6.0, 1.5),
        "title": (1.5, 0.3),
        "description": (1.0, 0.2),
        "venue": (0.3, 0.0),
    }

    def embed_one(self, show: ShowText) -> list[float]:
        vector = [0.0] * DIMENSION
        for field, (word_weight, gram_weight) in self.WEIGHTS.items():
            words = _words(getattr(show, field))
            if not words:
                continue
            scale = 1.0 / math.sqrt(len(words))  # long descriptions do not drown the genre
            for word in words:
                index, sign = _bucket(f"{field}:{word}" if field == "category" else word)
                vector[index] += sign * word_weight * scale
                for gram in _trigrams(word) if gram_weight else ():
                    index, sign = _bucket("#" + gram)
                    vector[index] += sign * gram_weight * scale
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector] if norm else vector

    def embed(self, shows: list[ShowText]) -> list[list[float]]:
        return [self.embed_one(show) for show in shows]


class GeminiEmbedder:
    """Google's embedding model through langchain_google_genai, cut to `dimension` values,
    over the API keys in turn, each behind a breaker of its own (recommender/gemini.py).

    Used only when a Google API key is set; each key's client is built on first use. Gemini
    itself is NOT exercised by our tests (no network, no key): the rotation is, with
    LangChain's fake embeddings (`clients`). Any failure of every key is raised as
    EmbeddingError, and the projection keeps the show pending.
    """

    dimension = DIMENSION

    def __init__(
        self,
        model: str = "models/gemini-embedding-001",
        keys: Sequence[str] = (),
        cooldown: float = KEY_COOLDOWN_SECONDS,
        clients: KeyRotation[Any] | None = None,
    ) -> None:
        self.model_name = f"gemini:{model}:{DIMENSION}"
        self._model = model
        if clients is None:
            clients = KeyRotation([partial(self._client, key) for key in keys], cooldown)
        self._clients = clients

    def _client(self, key: str) -> Any:
        from langchain_google_genai import GoogleGenerativeAIEmbeddings
        from pydantic import SecretStr

        return GoogleGenerativeAIEmbeddings(model=self._model, api_key=SecretStr(key))

    def embed(self, shows: list[ShowText]) -> list[list[float]]:
        texts = [
            f"{s.category}. {s.title}. {s.description} (at {s.venue})"
            for s in shows  # genre first
        ]
        try:
            raw = self._clients.call(
                lambda client: client.embed_documents(texts, output_dimensionality=DIMENSION)
            )
        except AllKeysFailedError as error:
            raise EmbeddingError(str(error)) from error
        vectors: list[list[float]] = []
        for values in raw:
            cut = [float(x) for x in values[:DIMENSION]]
            norm = math.sqrt(sum(x * x for x in cut)) or 1.0
            vectors.append([x / norm for x in cut])
        return vectors


def embedder_from_env(settings: RecommenderSettings | None = None) -> Embedder:
    """Gemini over the Google API keys set (GOOGLE_API_KEYS or GOOGLE_API_KEY), with the
    embedding model of the settings; without a key, the offline embedder."""
    keys = google_api_keys()
    if not keys:
        return OfflineEmbedder()
    tuning = settings or RecommenderSettings()
    return GeminiEmbedder(tuning.embedding_model, keys, tuning.key_cooldown_seconds)


def to_pgvector(vector: list[float]) -> str:
    """The text form of a vector, for a `%s::vector` parameter."""
    return "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
