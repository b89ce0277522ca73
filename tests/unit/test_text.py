"""The text types every command's text goes through before it can enter the log."""

from __future__ import annotations

import unicodedata
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from commands.models import BookingRequest, RegisterAccount
from commands.text import SafeLine, SafeText, StripePaymentMethodId, safe_text
from projections.tables import storable_json, storable_text


class Titled(BaseModel):
    title: Annotated[SafeLine, Field(min_length=1, max_length=200)]
    description: SafeText = ""


class Paid(BaseModel):
    payment_method: StripePaymentMethodId


BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068"]
BIDI += ["\u2069", "\u200e", "\u200f", "\u061c"]
CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\x7f", "\x85", "\x9f"]


@pytest.mark.parametrize("text", ["Night of Jazz", "Fête de la musique", "東京ドーム", "🎷 live"])
def test_ordinary_text_passes(text: str) -> None:
    assert Titled(title=text).title == unicodedata.normalize("NFC", text)


def test_text_is_stored_in_nfc() -> None:
    decomposed = "Fe\u0302te"  # e + combining circumflex
    assert Titled(title=decomposed).title == "F\u00eate"
    assert Titled(title="x", description=decomposed).description == "F\u00eate"


@pytest.mark.parametrize("character", [*CONTROLS, "\t", "\n", "\r"])
def test_a_line_refuses_every_control_character(character: str) -> None:
    with pytest.raises(ValidationError, match="control characters are not allowed"):
        Titled(title=f"Jazz{character}Night")


@pytest.mark.parametrize("character", [*BIDI, "\u2028", "\u2029"])
def test_a_line_refuses_bidi_controls_and_separators(character: str) -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        Titled(title=f"cod{character}exe.doc")


@pytest.mark.parametrize("character", CONTROLS)
def test_a_description_refuses_controls_other_than_tabs_and_line_breaks(character: str) -> None:
    with pytest.raises(ValidationError, match="control characters are not allowed"):
        Titled(title="x", description=f"two{character}sets")


def test_a_description_keeps_tabs_and_line_breaks() -> None:
    text = "Set one:\tstandards\r\nSet two:\toriginals\n"
    assert Titled(title="x", description=text).description == text


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError):
        Titled(title="a\ud800b")
    with pytest.raises(ValueError, match="surrogates"):
        safe_text("a\udfffb", multiline=True)


def test_the_error_does_not_echo_the_value() -> None:
    with pytest.raises(ValidationError) as raised:
        Titled(title="secret\x00value")
    assert "secret" not in str(raised.value.errors(include_input=False))


@pytest.mark.parametrize(
    "method", ["pm_card_visa", "pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"]
)
def test_stripe_payment_method_ids_pass(method: str) -> None:
    assert Paid(payment_method=method).payment_method == method


@pytest.mark.parametrize(
    "method",
    ["pm_\x00", "pm_card_visa\u202e", "pm_card_visa\n", "card", "pm_", "pm_" + "a" * 97, "pi_x1"],
)
def test_anything_else_is_no_payment_method(method: str) -> None:
    with pytest.raises(ValidationError):
        Paid(payment_method=method)


SHOW = "6f1c1f8e-7f5b-4c49-9d39-3a4c1d1e2f10"


@pytest.mark.parametrize("quantity", ["2", True, 2.0, "two"])
def test_a_quantity_is_an_integer_not_something_like_one(quantity: object) -> None:
    with pytest.raises(ValidationError):
        BookingRequest.model_validate({"show_id": SHOW, "quantity": quantity})


def test_json_values_still_arrive_as_strings_where_json_has_no_type() -> None:
    """UUIDs and times come as JSON strings: strict numbers must not make them fail."""
    request = BookingRequest.model_validate({"show_id": SHOW, "quantity": 2})
    assert str(request.show_id) == SHOW and request.quantity == 2


def test_an_account_name_is_one_safe_line() -> None:
    with pytest.raises(ValidationError):
        RegisterAccount(email="fan@example.com", password="long enough", name="Fan\u202eevil")
    account = RegisterAccount(email="fan@example.com", password="long enough", name="Zoë")
    assert account.name == "Zoë"


def test_the_read_side_stores_whatever_an_old_event_says() -> None:
    """The projection layer's net under the edge: NUL and lone surrogates become U+FFFD,
    in text and in every string of a JSON document (keys too); other text is left alone."""
    assert storable_text("Jazz\x00Night") == "Jazz\ufffdNight"
    assert storable_text("a\ud800b") == "a\ufffdb"
    assert storable_text("Fête 🎷\t") == "Fête 🎷\t"
    document = {"A\x00": [{"label": "1\x00", "seats": 10}], "n": 10**30}
    assert storable_json(document) == {"A\ufffd": [{"label": "1\ufffd", "seats": 10}], "n": 10**30}
