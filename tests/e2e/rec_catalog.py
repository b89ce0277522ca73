"""A demo catalog for recommendation tests: realistic shows across distinct genres, with the
venues shared across genres (so that only genre and wording can tell shows apart); and a
customer's confirmed booking, written to the event store as the booking saga leaves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from domain.booking import Booking
from infra.event_store import PostgresEventStore
from recommender.embedder import EmbeddingError, ShowText

VENUES = ["Riverside Hall", "The Old Theatre", "Civic Arena", "Harbour Pavilion", "Oak Room"]

CATALOG: dict[str, list[tuple[str, str]]] = {
    "jazz": [
        ("Midnight Bebop Sessions", "A hard-bop quintet with saxophone, trumpet and upright bass."),
        ("Swing Era Big Band", "A sixteen-piece big band playing swing standards and ballads."),
        ("Coltrane Tribute Quartet", "Modal jazz and saxophone improvisation, in two sets."),
        ("Smoky Piano Trio", "Piano, brushes and double bass: intimate jazz standards."),
        ("Latin Jazz Fiesta", "Afro-Cuban jazz with congas, piano montunos and brass."),
        ("Vocal Jazz Evening", "A jazz singer with a trio: Gershwin, Ellington, scat."),
    ],
    "rock": [
        ("Thunder Road Revival", "Loud guitars, stadium anthems and a drum solo."),
        ("Garage Punk Riot", "Three chords, distortion pedals and a mosh pit."),
        ("Classic Rock Legends", "Guitar riffs and power ballads from the seventies."),
        ("Indie Rock Showcase", "Four bands with jangling guitars and big choruses."),
        ("Heavy Metal Mayhem", "Double kick drums, shredding solos, headbanging."),
        ("Grunge Unplugged", "Flannel, feedback and acoustic rock covers."),
    ],
    "classical": [
        ("Beethoven Symphony Cycle", "The orchestra plays the Fifth and Seventh symphonies."),
        ("Mozart Piano Concertos", "A soloist and chamber orchestra in two concertos."),
        ("Bach Cello Suites", "The six suites for solo cello, in one evening."),
        ("Romantic Violin Recital", "Brahms and Schumann sonatas for violin and piano."),
        ("Baroque Chamber Festival", "Harpsichord, viola da gamba and Vivaldi concertos."),
        ("Mahler Grand Symphony", "A full orchestra and choir in the Resurrection symphony."),
    ],
    "comedy": [
        ("Stand-Up Saturday", "Five comedians, one microphone, no topic off limits."),
        ("Improv Chaos Hour", "An improvised comedy troupe builds scenes from your prompts."),
        ("Late Night Laughs", "A headline comedian with new stand-up material."),
        ("Sketch Comedy Revue", "Absurd sketches, costume changes and running gags."),
        ("Comedy Roast Battle", "Comedians trade jokes and insults in a roast."),
        ("Open Mic Funnies", "New comedians try out their first five minutes."),
    ],
    "ballet": [
        ("Swan Lake", "The ballet company dances Tchaikovsky's classic with full corps."),
        ("The Nutcracker", "A family ballet with dancing snowflakes and sugar plums."),
        ("Giselle", "A romantic ballet of love, betrayal and ghostly dancers."),
        ("Modern Dance Triple Bill", "Three contemporary ballet pieces by new choreographers."),
        ("Sleeping Beauty", "Classical ballet: pointe work, pas de deux and tutus."),
        ("Romeo and Juliet Ballet", "Prokofiev's score danced by the principal dancers."),
    ],
    "electronic": [
        ("Techno Warehouse Rave", "A DJ lineup of pounding techno until sunrise."),
        ("Deep House Sunset", "Deep house DJs, synthesizers and a light show."),
        ("Drum and Bass Marathon", "Fast breakbeats and heavy bass from four DJs."),
        ("Ambient Synth Journey", "Modular synthesizers and ambient soundscapes."),
        ("Trance Nation", "Euphoric trance anthems and lasers all night."),
        ("Electro Pop Party", "Synth pop producers play live electronic sets."),
    ],
}


def show_bodies() -> list[dict[str, Any]]:
    """One command body per show (36 shows in 6 genres), all in the future."""
    first = datetime.now(UTC) + timedelta(days=30)
    bodies = []
    for g, (category, shows) in enumerate(CATALOG.items()):
        for i, (title, description) in enumerate(shows):
            bodies.append(
                {
                    "title": title,
                    "description": description,
                    "category": category,
                    "venue": VENUES[(g + i) % len(VENUES)],
                    "starts_at": (first + timedelta(days=7 * i + g)).isoformat(),
                    "currency": "EUR",
                    "price_tiers": [{"code": "FLOOR", "price_cents": 3000}],
                    "sections": [
                        {"code": "GA", "kind": "general", "tier": "FLOOR", "capacity": 100}
                    ],
                }
            )
    return bodies


def confirmed_booking(customer_id: UUID | str, show_id: UUID | str) -> Booking:
    """A booking placed, paid and confirmed (not saved yet)."""
    booking = Booking(
        booking_id=uuid4(),
        show_id=UUID(str(show_id)),
        customer_id=UUID(str(customer_id)),
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
    return booking


def confirm_booking(store: PostgresEventStore, customer_id: UUID | str, show_id: UUID | str) -> int:
    """A confirmed booking in the event store; returns the log position of its last event."""
    return store.save(confirmed_booking(customer_id, show_id))


class BrokenEmbedder:
    """An embedding model that is down."""

    model_name = "broken"
    dimension = 256

    def embed(self, shows: list[ShowText]) -> list[list[float]]:
        raise EmbeddingError("the model is down")
