"""Recommendations (issue 5) over HTTP: the real app, PostgreSQL with pgvector, the offline
embedder, and the `recommender` follower of the event log, started beside the projection
runners as `ticketblitz up` starts it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.booking import Booking
from infra.bootstrap import Container, bootstrap
from infra.embedded import StackEndpoints
from infra.http_server import BackgroundServer
from infra.web import create_app
from recommender.embedder import EmbeddingError, OfflineEmbedder, ShowText
from recommender.projection import SCHEMA, RecommenderProjection
from tests.e2e.conftest import Api, settings_for_tests
from tests.e2e.rec_catalog import show_bodies
from tests.integration.audit_support import new_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def container(
    endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """A database of its own, so that only our catalog is in it (other tests add jazz nights);
    the recommender follower starts beside the projection runners, as in `ticketblitz up`."""
    assert endpoints.database_url is not None
    with new_database(endpoints.database_url) as url:
        settings = settings_for_tests(
            replace(endpoints, database_url=url), tmp_path_factory.mktemp("rec")
        )
        built = bootstrap(settings)
        assert built.read_side is not None
        built.read_side.start_runners()
        try:
            yield built
        finally:
            built.close()


@pytest.fixture(scope="module")
def api(container: Container) -> Iterator[Api]:
    server = BackgroundServer(create_app(container)).start()
    client = Api(server.url + "/api/v1")
    yield client
    client.http.close()
    server.stop()


@pytest.fixture(scope="module")
def catalog(api: Api, container: Container) -> dict[str, list[str]]:
    """36 shows on sale, by genre; the follower started beside the projection runners embeds
    them with the offline embedder (no GOOGLE_API_KEY in tests)."""
    assert container.recommender is not None
    assert container.recommender.model == OfflineEmbedder.model_name
    admin = api.admin()
    by_genre: dict[str, list[str]] = {}
    for body in show_bodies():
        r = api.http.post("/shows", json=body, headers=admin)
        assert r.status_code == 201, r.text
        show_id = r.json()["show_id"]
        r = api.http.post(f"/shows/{show_id}/open-sale", headers=admin)
        assert r.status_code == 200, r.text
        by_genre.setdefault(body["category"], []).append(show_id)
    return by_genre


def confirm_booking(container: Container, customer_id: str, show_id: str) -> int:
    """A booking placed, paid and confirmed, written through the domain and the event store."""
    booking = Booking(
        booking_id=uuid4(),
        show_id=UUID(show_id),
        customer_id=UUID(customer_id),
        seats=[],
        general={"GA": 2},
        amount_cents=6000,
        currency="EUR",
        hold_expires_at=datetime.now(UTC) + timedelta(minutes=10),
        payment_method="pm_card_visa",
    )
    booking.request_payment("pi_test_" + uuid4().hex[:8])
    booking.record_payment(booking.payment_intent_id or "", 6000)
    booking.confirm()
    return container.store.save(booking)


def recommendations(api: Api, who: dict[str, str], **params: Any) -> dict[str, Any]:
    r = api.http.get("/me/recommendations", params=params, headers=who)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_a_jazz_fan_gets_jazz_shows_first(
    api: Api, container: Container, catalog: dict[str, list[str]]
):
    """Given a catalog of 36 shows in 6 genres and a customer who booked two jazz shows;
    when they ask for recommendations;
    then the nearest shows are the other jazz shows, and not the ones they booked."""
    fan = api.new_customer()
    booked = catalog["jazz"][:2]
    position = max(confirm_booking(container, fan["account_id"], s) for s in booked)

    answer = recommendations(api, fan, limit=10, after=position)

    assert answer["source"] == "vector"
    items = answer["items"]
    assert len(items) == 10
    assert not {i["show_id"] for i in items} & set(booked)
    assert {i["show_id"] for i in items[:4]} == set(catalog["jazz"][2:]), items
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)


def test_a_new_customer_gets_popular_upcoming_shows(
    api: Api, container: Container, catalog: dict[str, list[str]]
):
    """Given a comedy show that sold more than any other; when a customer with no booking
    asks, then the answer is the popular shows, that one first."""
    hit = catalog["comedy"][0]
    position = 0
    for _ in range(3):
        position = confirm_booking(container, str(uuid4()), hit)
    newcomer = api.new_customer()

    answer = recommendations(api, newcomer, limit=5, after=position)

    assert answer["source"] == "popular"
    assert answer["items"][0]["show_id"] == hit
    assert all(i["score"] is None for i in answer["items"])


def test_similar_shows_are_of_the_same_genre(api: Api, catalog: dict[str, list[str]]):
    show = catalog["ballet"][0]
    position = api.http.get("/shows", params={"limit": 1}).json()["position"]
    r = api.http.get(f"/shows/{show}/similar", params={"limit": 5, "after": position})

    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["source"] == "vector"
    assert [i["category"] for i in answer["items"]] == ["ballet"] * 5
    assert show not in {i["show_id"] for i in answer["items"]}


def test_errors_are_problems(api: Api, catalog: dict[str, list[str]]):
    r = api.http.get(f"/shows/{uuid4()}/similar")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    r = api.http.get(f"/shows/{catalog['rock'][0]}/similar", params={"limit": 0})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert api.http.get("/me/recommendations").status_code == 401
    assert api.http.get("/me/recommendations", headers=api.admin()).status_code == 403


class BrokenEmbedder:
    model_name = "broken"
    dimension = 256

    def embed(self, shows: list[ShowText]) -> list[list[float]]:
        raise EmbeddingError("the model is down")


def test_a_show_the_embedder_fails_on_stays_pending_then_is_embedded(container: Container):
    """Survival mode: the page commits without the vector; a later attempt embeds it."""
    show_id = uuid4()
    with container.store.connection() as conn, conn.transaction(force_rollback=True):
        conn.execute(
            f"INSERT INTO {SCHEMA}.show_vectors (show_id, title, category, venue, starts_at)"
            " VALUES (%s, 'Quiet Jazz', 'jazz', 'Oak Room', now() + interval '9 days')",
            (show_id,),
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.pending_embeddings (show_id, title, description, category,"
            " venue) VALUES (%s, 'Quiet Jazz', 'A trio.', 'jazz', 'Oak Room')",
            (show_id,),
        )

        assert RecommenderProjection(BrokenEmbedder()).embed_pending(conn) == 0
        row = conn.execute(
            f"SELECT attempts, last_error, next_attempt_at > now() FROM {SCHEMA}"
            ".pending_embeddings WHERE show_id = %s",
            (show_id,),
        ).fetchone()
        assert row == (1, "the model is down", True)

        conn.execute(
            f"UPDATE {SCHEMA}.pending_embeddings SET next_attempt_at = now() - interval '1s'"
            " WHERE show_id = %s",
            (show_id,),
        )
        assert RecommenderProjection(OfflineEmbedder()).embed_pending(conn) >= 1
        row = conn.execute(
            f"SELECT embedding IS NOT NULL, model FROM {SCHEMA}.show_vectors WHERE show_id = %s",
            (show_id,),
        ).fetchone()
        assert row == (True, "offline-hash-v1")
        gone = conn.execute(
            f"SELECT 1 FROM {SCHEMA}.pending_embeddings WHERE show_id = %s", (show_id,)
        ).fetchone()
        assert gone is None


def test_recommendations_answer_fast(api: Api, catalog: dict[str, list[str]]):
    """p95 of GET /me/recommendations, measured over 100 requests on this catalog."""
    fan = api.new_customer()
    recommendations(api, fan)  # warm up
    durations = []
    for _ in range(100):
        start = time.perf_counter()
        recommendations(api, fan, limit=10)
        durations.append(time.perf_counter() - start)
    p95 = sorted(durations)[94]
    print(f"p95 GET /me/recommendations: {p95 * 1000:.1f} ms")
    assert p95 < 0.5


def test_explain_adds_a_pitch_grounded_on_the_recommendations(
    api: Api, container: Container, catalog: dict[str, list[str]]
):
    """Without GOOGLE_API_KEY the template writes it: it names the first shows recommended."""
    fan = api.new_customer()
    position = confirm_booking(container, fan["account_id"], catalog["classical"][0])

    answer = recommendations(api, fan, limit=5, after=position, explain="true")

    pitch = answer["pitch"]
    assert pitch["source"] == "template"
    titles = [i["title"] for i in answer["items"]]
    assert pitch["shows"] == titles[:3]
    assert pitch["text"].startswith("Because you enjoyed classical: ")
    assert recommendations(api, fan, limit=5)["pitch"] is None
