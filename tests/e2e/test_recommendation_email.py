"""The booking-confirmed e-mail suggests other shows (issue 5): a booking paid over HTTP, the
saga, the Kafka relay, the notifier with the recommender's suggestions, the SMTP mailbox.

The pitch is written by the real LCEL chain (recommender/pitch.py) driven by LangChain's fake
chat model; the recommendations come from PostgreSQL (pgvector) with the catalog embedded.
Whatever the model or the recommender does, the e-mail goes out, once.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
)
from pydantic import Field

from infra.event_store import PostgresEventStore
from infra.mailer import SmtpMailer
from process_managers.integration_events import IntegrationEvent
from process_managers.notifier import Notifier, compose
from recommender.pitch import PitchWriter
from recommender.projection import SCHEMA
from recommender.queries import BookingSuggestions, Recommender
from tests.e2e.rec_catalog import CATALOG
from tests.e2e.rec_support import by_genre, index_shows, publish_catalog
from tests.e2e.saga_support import VISA, SagaSystem, book, start_system
from tests.integration.audit_support import new_database
from ticketblitz.bootstrap import bootstrap
from ticketblitz.embedded import Mailbox, StackEndpoints
from ticketblitz.workers import build_workers

pytestmark = pytest.mark.integration

INVENTED = "Cats on Ice"  # in no catalog


class PromptedChatModel(FakeListChatModel):
    """LangChain's fake chat model, answering from the prompt it is given, as a model would
    answer each customer differently:

    - to a jazz fan, a pitch of the first show listed, claiming to name an invented one too;
      if some shows listed are not jazz, a pitch calling them all jazz (issue 17: refused);
    - to a comedy fan, a pitch of an invented show;
    - to a rock fan, nothing until `released` is set (it hangs).
    """

    responses: list[str] = Field(default_factory=lambda: ["unused"])
    released: threading.Event = Field(default_factory=threading.Event)

    def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        prompt = str(messages[-1].content)
        listed = re.findall(r"^- (.+) \(", prompt, flags=re.MULTILINE)
        if "liked: rock" in prompt:
            self.released.wait()
            raise FakeListChatModelError("no answer")
        if "liked: comedy" in prompt:
            return json.dumps({"text": f"Do not miss {INVENTED}!", "shows": [INVENTED]})
        genres = re.findall(r"^- .+ \((\w+), at ", prompt, flags=re.MULTILINE)
        if "liked: jazz" in prompt and set(genres) != {"jazz"}:
            names = ", ".join(listed[:-1]) + " and " + listed[-1]
            return json.dumps({"text": f"Because you enjoyed jazz: {names}!", "shows": listed})
        text = f"More jazz for you: {listed[0]} is coming up."
        return json.dumps({"text": text, "shows": [listed[0], INVENTED]})


@pytest.fixture(scope="module")
def model() -> Iterator[PromptedChatModel]:
    chat = PromptedChatModel()
    yield chat
    chat.released.set()


@pytest.fixture(scope="module")
def system(
    endpoints: StackEndpoints, stack_dir: Path, model: PromptedChatModel
) -> Iterator[SagaSystem]:
    """The saga's system; its workers' notifier suggests shows with a pitch from `model`
    (one second at most per pitch)."""
    with ExitStack() as stack:
        started = start_system(endpoints, stack_dir / "rec-mail")
        stack.callback(started.close)
        container = bootstrap(started.settings)
        stack.callback(container.close)
        assert container.recommender is not None
        container.mail_suggestions = BookingSuggestions(
            container.recommender, PitchWriter(model, timeout=1.0)
        )
        stack.callback(build_workers(container).start().stop)
        yield started


@pytest.fixture(scope="module")
def catalog(system: SagaSystem) -> dict[str, list[str]]:
    """The demo catalog on sale and embedded; show ids by genre, in CATALOG's order."""
    shows = publish_catalog(system.api)
    index_shows(system.store, shows)
    return by_genre(shows)


def titles(genre: str) -> set[str]:
    return {title for title, _ in CATALOG[genre]}


def confirmation_for(
    system: SagaSystem, mailbox: Mailbox, catalog: dict[str, list[str]], genre: str
) -> tuple[str, str]:
    """A new customer books the first show of `genre` and pays: the show's title and the
    body of the one e-mail they receive."""
    fan = system.api.new_customer()
    book(system.api, fan, catalog[genre][0], quantity=2, payment_method=VISA)
    mail = mailbox.wait_for(lambda m: m["To"] == fan["email"], timeout=30)
    assert "is confirmed" in mail["Subject"]
    assert [m["To"] for m in mailbox.messages()].count(fan["email"]) == 1
    body = mail.get_body(("plain",))  # the text (the tickets are attached)
    assert body is not None
    return CATALOG[genre][0][0], body.get_content()


def suggested(body: str) -> tuple[str, list[str]]:
    """The "You may also like" section of a body: its text and the titles it lists."""
    assert "You may also like" in body, body
    section = body.split("You may also like", 1)[1]
    return section, re.findall(r"^  \* (.+?), ", section, flags=re.MULTILINE)


def test_the_confirmation_suggests_shows_with_the_models_pitch(
    system: SagaSystem, mailbox: Mailbox, catalog: dict[str, list[str]]
):
    """Given a working model; when a jazz fan's booking is confirmed, then the e-mail lists
    three other jazz shows and the model's pitch of the first; the show the model named
    outside the recommendations is dropped."""
    booked, body = confirmation_for(system, mailbox, catalog, "jazz")

    assert "Amount paid: 60.00 EUR" in body  # the confirmation, as ever
    section, listed = suggested(body)
    assert len(listed) == 3
    assert set(listed) <= titles("jazz") - {booked}
    assert f"More jazz for you: {listed[0]} is coming up." in section
    assert INVENTED not in body


def test_a_pitch_naming_a_show_that_was_not_recommended_is_written_by_the_template(
    system: SagaSystem, mailbox: Mailbox, catalog: dict[str, list[str]]
):
    booked, body = confirmation_for(system, mailbox, catalog, "comedy")

    section, listed = suggested(body)
    assert set(listed) <= titles("comedy") - {booked}
    assert f"Because you enjoyed comedy: {listed[0]}, {listed[1]} and {listed[2]}." in section
    assert INVENTED not in body


def test_with_the_model_hanging_the_template_writes_the_pitch_and_the_email_goes_once(
    system: SagaSystem, mailbox: Mailbox, catalog: dict[str, list[str]]
):
    booked, body = confirmation_for(system, mailbox, catalog, "rock")

    section, listed = suggested(body)
    assert set(listed) <= titles("rock") - {booked}
    assert "Because you enjoyed rock: " in section


def test_a_fan_whose_genre_runs_out_is_given_the_true_reason_for_each_show(
    system: SagaSystem, mailbox: Mailbox, catalog: dict[str, list[str]]
):
    """Issue 17: "Because you enjoyed jazz:" was followed by a ballet and a comedy. Given a
    fan who holds five of the six jazz shows (four recorded by the recommender, the fifth just
    booked) and a model that calls every show jazz; when the booking is confirmed; then the
    model's pitch is refused, and the template names the one jazz show left "Because you
    enjoyed jazz" and the others "Similar to" a show the fan booked."""
    fan = system.api.new_customer()
    with system.store.connection() as conn:
        conn.execute(
            f"INSERT INTO {SCHEMA}.customer_shows (customer_id, show_id)"
            " SELECT %s, unnest(%s::uuid[])",
            (UUID(fan["account_id"]), [UUID(s) for s in catalog["jazz"][1:5]]),
        )
    book(system.api, fan, catalog["jazz"][0], quantity=1, payment_method=VISA)
    mail = mailbox.wait_for(lambda m: m["To"] == fan["email"], timeout=30)
    body = mail.get_body(("plain",))
    assert body is not None

    section, listed = suggested(body.get_content())

    genre = {title: g for g, shows in CATALOG.items() for title, _ in shows}
    booked = [title for title, _ in CATALOG["jazz"][:5]]
    assert len(listed) == 3 and [genre[t] for t in listed].count("jazz") == 1
    (left,) = [t for t in listed if genre[t] == "jazz"]
    assert left == CATALOG["jazz"][5][0]
    pitch = " ".join(section.split("  * ")[0].split())  # the paragraph, unwrapped
    assert f"Because you enjoyed jazz: {left}." in pitch
    others = [t for t in listed if t != left]
    for reason in re.findall(r"(?:^|\. )([^.:]+): ", pitch):
        assert reason == "Because you enjoyed jazz" or (
            reason.startswith("Similar to ") and reason.removeprefix("Similar to ") in booked
        ), pitch
    assert all(t in pitch and f"jazz: {t}" not in pitch for t in others), pitch


def confirmed_event(show_id: str, title: str) -> IntegrationEvent:
    return IntegrationEvent(
        event_id=uuid4(),
        type="booking.confirmed",
        occurred_at=datetime.now(UTC),
        position=1,
        show_id=UUID(show_id),
        booking_id=uuid4(),
        payload={
            "status": "confirmed",
            "customer": {"id": str(uuid4()), "email": f"fan-{uuid4().hex[:8]}@x.dev", "name": "Jo"},
            "general": {"GA": 1},
            "currency": "EUR",
            "paid_cents": 3000,
            "show": {"title": title, "venue": "Oak Room", "starts_at": "2027-03-01T20:00"},
        },
    )


def mailer_for(endpoints: StackEndpoints) -> SmtpMailer:
    assert endpoints.smtp_host is not None and endpoints.smtp_port is not None
    return SmtpMailer(endpoints.smtp_host, endpoints.smtp_port, "tickets@tests.ticketblitz.dev")


def sent_alone(
    store: PostgresEventStore,
    endpoints: StackEndpoints,
    mailbox: Mailbox,
    suggestions: BookingSuggestions,
    event: IntegrationEvent,
    suggest_timeout: float = 5.0,
) -> EmailMessage:
    """The e-mail a notifier with these suggestions sends for `event` (handed to it directly)."""

    def no_kafka() -> Any:
        raise AssertionError("the event is handed to the notifier directly")

    mailer = mailer_for(endpoints)
    notifier = Notifier(store, mailer, no_kafka, [], suggestions, suggest_timeout)
    notifier.setup()
    notifier.handle(event.to_json())
    notifier.close()
    recipient = event.payload["customer"]["email"]
    mail: EmailMessage = mailbox.wait_for(lambda m: m["To"] == recipient, timeout=10)
    assert [m["To"] for m in mailbox.messages()].count(recipient) == 1
    return mail


def test_when_the_recommender_fails_the_email_goes_out_as_before(
    endpoints: StackEndpoints, mailbox: Mailbox, system: SagaSystem, catalog: dict[str, list[str]]
):
    """A database without the recommender's tables: every query fails."""
    assert endpoints.database_url is not None
    event = confirmed_event(catalog["jazz"][0], CATALOG["jazz"][0][0])
    with new_database(endpoints.database_url) as url:
        store = PostgresEventStore(url, pool_size=2)
        try:
            broken = BookingSuggestions(Recommender(store, "offline-hash-v1"), PitchWriter(None))
            mail = sent_alone(store, endpoints, mailbox, broken, event)
        finally:
            store.close()

    before = compose(event, mailer_for(endpoints).sender)
    assert before is not None
    received = mail.get_content().replace("\r\n", "\n")  # SMTP's line ends
    assert received == before.get_content()
    assert "You may also like" not in received


def test_suggestions_later_than_the_notifiers_bound_are_left_out(
    endpoints: StackEndpoints,
    mailbox: Mailbox,
    system: SagaSystem,
    catalog: dict[str, list[str]],
    model: PromptedChatModel,
):
    """The pitch of a rock fan hangs, and its own timeout is longer than the notifier's bound."""
    assert system.container.recommender is not None
    slow = BookingSuggestions(system.container.recommender, PitchWriter(model, timeout=60))
    event = confirmed_event(catalog["rock"][0], CATALOG["rock"][0][0])

    mail = sent_alone(system.store, endpoints, mailbox, slow, event, suggest_timeout=0.5)

    assert "Amount paid: 30.00 EUR" in mail.get_content()
    assert "You may also like" not in mail.get_content()
