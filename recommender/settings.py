"""The recommender's settings (TICKETBLITZ_REC_* variables): tuning of the serving side and the
Gemini models. The API keys themselves are Google's variables (`GOOGLE_API_KEYS`, comma-separated,
or `GOOGLE_API_KEY`; recommender/gemini.py)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RecommenderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETBLITZ_REC_", extra="ignore")

    vector_timeout_ms: int = Field(default=250, ge=1)  # statement_timeout of vector queries
    ef_search: int = Field(default=100, ge=1, le=1000)  # hnsw.ef_search (pgvector's range)
    cache_ttl_seconds: float = Field(default=24 * 3600, gt=0)  # stored answers (cache tier)
    pitch_timeout_seconds: float = Field(default=4.0, gt=0)  # each LLM call
    mail_shows: int = Field(default=3, ge=1, le=10)  # shows in the booking-confirmed e-mail
    # Gemini (used only when a Google API key is set). A new embedding model re-embeds every
    # show (README: "A new embedding model").
    chat_model: str = Field(default="gemini-2.5-flash", min_length=1)
    embedding_model: str = Field(default="models/gemini-embedding-001", min_length=1)
    # A key that failed is skipped for this long, then tried once again.
    key_cooldown_seconds: float = Field(default=60.0, gt=0)
