"""Recommendations (issue 5) over HTTP, as `ticketblitz up` runs them: the real app, the
workers (the relay publishes the integration events to Kafka), and the recommender's Kafka
consumer beside the projection runners, which embeds the shows with the offline embedder into
PostgreSQL with pgvector. Every booking below goes event store -> relay -> Kafka -> consumer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from http_shell.container import Container
from recommender.embedder import OfflineEmbedder
from tests.e2e.conftest import Api, served
from tests.e2e.rec_catalog import CATALOG, confirm_booking, show_bodies
from tests.e2e.saga_support import saga_settings, wait_until
from tests.integration.audit_support import new_database
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import StackEndpoints
from ticketblitz.workers import build_workers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def container(
    endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """A database and topics of its own, so that only our catalog is in them (other tests add
    jazz nights); the workers and the recommender start as `ticketblitz up` starts them."""
    assert endpoints.database_url is not None
    prefix = f"rec{uuid4().hex[:8]}"
    with new_database(endpoints.database_url) as url:
        # `after=` waits up to read_wait_seconds: relay, broker and consumer are all on the way
        settings = saga_settings(
            endpoints, tmp_path_factory.mktemp("rec"), url, prefix, read_wait_seconds=20
        )
        built = bootstrap(settings)
        workers = build_workers(built).start()
        assert built.read_side is not None
        built.read_side.start_runners()
        try:
            yield built
        finally:
            workers.stop()
            built.close()


@pytest.fixture(scope="module")
def api(container: Container) -> Iterator[Api]:
    with served(container) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(api: Api, container: Container) -> dict[str, list[str]]:
    """36 shows on sale, by genre; the recommender's consumer embeds them with the offline
    embedder (no GOOGLE_API_KEY in tests) once the relay published them."""
    assert container.recommender is not None
    assert container.recommender.model == OfflineEmbedder.model_name
    by_genre: dict[str, list[str]] = {}
    for body in show_bodies():
        by_genre.setdefault(body["category"], []).append(api.publish_show(body))
    return by_genre


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
    position = max(confirm_booking(container.store, fan["account_id"], s) for s in booked)

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
        position = confirm_booking(container.store, str(uuid4()), hit)
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


def test_explain_adds_a_pitch_grounded_on_the_recommendations(
    api: Api, container: Container, catalog: dict[str, list[str]]
):
    """Without GOOGLE_API_KEY the template writes it: it names the first shows recommended."""
    fan = api.new_customer()
    position = confirm_booking(container.store, fan["account_id"], catalog["classical"][0])

    answer = recommendations(api, fan, limit=5, after=position, explain="true")

    pitch = answer["pitch"]
    assert pitch["source"] == "template"
    titles = [i["title"] for i in answer["items"]]
    assert pitch["shows"] == titles[:3]
    assert pitch["text"].startswith("Because you enjoyed classical: ")
    assert recommendations(api, fan, limit=5)["pitch"] is None


def reasons_given(pitch: str, titles: list[str]) -> dict[str, str]:
    """The reason a template pitch ("Reason: A, B and C. Other reason: D. ...") gives each of
    `titles` it names."""
    given = {}
    for sentence in pitch.split(". "):
        reason, _, names = sentence.partition(": ")
        given.update({title: reason for title in titles if title in names})
    return given


def test_each_show_of_a_pitch_is_named_under_its_true_reason(
    api: Api, container: Container, catalog: dict[str, list[str]]
):
    """Issue 17: "Because you enjoyed jazz:" was followed by a ballet and a comedy. Given a
    fan who booked five of the six jazz shows; when they ask for three recommendations with a
    pitch; then the jazz show left is named "Because you enjoyed jazz", and the other shows
    (not jazz) under "Similar to" one of the shows the fan booked."""
    fan = api.new_customer()
    booked = [title for title, _ in CATALOG["jazz"][:5]]
    for show_id in catalog["jazz"][:5]:
        position = confirm_booking(container.store, fan["account_id"], show_id)

    answer = recommendations(api, fan, limit=3, after=position, explain="true")

    assert answer["source"] == "vector"
    genre = {item["title"]: item["category"] for item in answer["items"]}
    assert sorted(genre.values()).count("jazz") == 1
    pitch = answer["pitch"]
    assert pitch["source"] == "template" and pitch["shows"] == list(genre)
    given = reasons_given(pitch["text"], list(genre))
    assert set(given) == set(genre)
    for title, reason in given.items():
        if genre[title] == "jazz":
            assert reason == "Because you enjoyed jazz", pitch["text"]
        else:
            assert reason.removeprefix("Similar to ") in booked, pitch["text"]


def test_a_show_is_found_by_its_category_word(api: Api, catalog: dict[str, list[str]]):
    """Issue 17: GET /shows?q=jazz finds the jazz shows, though their titles and descriptions
    need not say "jazz" (Midnight Bebop Sessions, Swing Era Big Band, ...)."""
    genre = f"zydeco{uuid4().hex[:6]}"
    body = {**show_bodies()[0], "title": "Bayou Accordion Night", "category": genre}
    body["description"] = "Washboards and accordions until late."
    show_id = api.publish_show(body)

    def found() -> bool:
        r = api.http.get("/shows", params={"q": genre})
        assert r.status_code == 200, r.text
        return [i["show_id"] for i in r.json()["items"]] == [show_id]

    wait_until(found, 30, f"the search for {genre!r} to find the show")
    r = api.http.get("/shows", params={"q": "jazz", "limit": 100})
    titles = {item["title"] for item in r.json()["items"]}
    assert {"Midnight Bebop Sessions", "Swing Era Big Band"} <= titles
