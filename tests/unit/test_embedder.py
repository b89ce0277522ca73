"""The offline embedder: deterministic, unit length, genre first."""

from __future__ import annotations

import math

from recommender.embedder import DIMENSION, OfflineEmbedder, ShowText, to_pgvector


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_deterministic_unit_vectors_of_256():
    show = ShowText("Smoky Piano Trio", "Piano, brushes and double bass.", "jazz", "Oak Room")
    first, again = OfflineEmbedder().embed([show, show])
    assert first == again
    assert len(first) == DIMENSION
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0, rel_tol=1e-9)
    assert to_pgvector(first).startswith("[") and to_pgvector(first).count(",") == 255


def test_genre_dominates_the_similarity():
    embed = OfflineEmbedder().embed_one
    jazz_a = embed(ShowText("Midnight Bebop", "A quintet with saxophone.", "jazz", "Oak Room"))
    jazz_b = embed(ShowText("Swing Big Band", "Sixteen musicians.", "jazz", "Civic Arena"))
    piano_classical = embed(
        ShowText("Mozart Piano Concertos", "A soloist and orchestra.", "classical", "Oak Room")
    )
    assert cosine(jazz_a, jazz_b) > cosine(jazz_a, piano_classical)
