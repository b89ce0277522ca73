"""Ticket secrets: Ed25519-signed, compact, URL-safe; nothing forged or altered verifies."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from commands.errors import InvalidTicketSecretError
from infra.settings import Settings
from infra.ticket_signing import (
    Ed25519TicketSigner,
    KeyDirectory,
    TicketKeyError,
    key_set,
    parse_private_key,
)

TICKET = UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
SHOW = UUID("6fa459ea-ee8a-3ca4-894e-db77e160355e")


def a_signer() -> Ed25519TicketSigner:
    return Ed25519TicketSigner(key_set(Ed25519PrivateKey.generate()))


SIGNER = a_signer()
SECRET = SIGNER.sign(TICKET, SHOW, "A-12-7")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_secret_round_trips_and_is_compact_url_safe_and_deterministic():
    verified = SIGNER.verify(SECRET)

    assert (verified.ticket_id, verified.show_id, verified.place) == (TICKET, SHOW, "A-12-7")
    assert verified.kid == SIGNER.current_kid()
    assert SECRET.startswith(f"TB1.{SIGNER.current_kid()}.")
    assert len(SECRET) < 200
    assert set(SECRET) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert SIGNER.sign(TICKET, SHOW, "A-12-7") == SECRET


def test_a_general_admission_place_and_unicode_round_trip():
    secret = SIGNER.sign(TICKET, SHOW, "Parkett-Süd")

    assert SIGNER.verify(secret).place == "Parkett-Süd"


def test_the_public_key_alone_verifies_a_secret_offline():
    """What a scanner does with the offline kit: the kid's public key checks the signature."""
    _, kid, payload, signature = SECRET.split(".")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(SIGNER.public_keys()[kid]))

    public.verify(unb64url(signature), f"TB1.{kid}.{payload}".encode())

    assert unb64url(payload)[:16] == TICKET.bytes


def test_a_forged_secret_with_another_key_does_not_verify():
    forger = a_signer()
    _, _, payload, _ = SECRET.split(".")
    head = f"TB1.{SIGNER.current_kid()}.{payload}"
    forged_key = Ed25519PrivateKey.generate()
    forged = f"{head}.{b64url(forged_key.sign(head.encode()))}"

    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(forged)
    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(forger.sign(TICKET, SHOW, "A-12-7"))  # another kid: unknown here


def test_an_altered_payload_does_not_verify():
    """Given a genuine secret; when its place is changed to a better seat (re-encoded
    properly); then the signature no longer matches."""
    version, kid, payload, signature = SECRET.split(".")
    better = unb64url(payload)[:32] + b"VIP-1-1"
    altered = f"{version}.{kid}.{b64url(better)}.{signature}"

    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(altered)


def test_an_altered_signature_does_not_verify():
    version, kid, payload, signature = SECRET.split(".")
    flipped = bytearray(unb64url(signature))
    flipped[10] ^= 0x01

    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(f"{version}.{kid}.{payload}.{b64url(bytes(flipped))}")


@pytest.mark.parametrize("cut", [1, 2, 10, 86, len(SECRET) - 1])
def test_a_truncated_secret_does_not_verify(cut: int):
    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(SECRET[:-cut])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s.replace("TB1.", "TB2.", 1),
        lambda s: s + ".",
        lambda s: s + "A",
        lambda s: s.replace(".", "..", 1),
        lambda s: s + "=",
        lambda s: s.upper(),
        lambda s: " " + s,
        lambda s: s + "é",
        lambda s: s * 4,
    ],
)
def test_a_mangled_secret_does_not_verify(mangle):
    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(mangle(SECRET))


KID = SIGNER.current_kid()
PAYLOAD = SECRET.split(".")[2]
B64URL = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=120)
CANDIDATES = (
    st.text(max_size=300)
    | st.builds(lambda p, s: f"TB1.{KID}.{p}.{s}", B64URL, B64URL)
    | st.builds(
        lambda sig: f"TB1.{KID}.{PAYLOAD}.{b64url(sig)}", st.binary(min_size=64, max_size=64)
    )
    | st.builds(
        lambda p: f"TB1.{KID}.{b64url(p)}.{SECRET.split('.')[3]}",
        st.binary(min_size=33, max_size=80),
    )
)


@settings(max_examples=500, deadline=None)
@given(CANDIDATES)
def test_no_random_string_verifies(candidate: str):
    """Random text, random parts under the real kid, random signatures of a real payload and
    random payloads under a real signature: none verifies."""
    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(candidate)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(SECRET) - 1), st.sampled_from("AQgw-_Z09."))
def test_no_single_character_change_verifies(index: int, replacement: str):
    changed = SECRET[:index] + replacement + SECRET[index + 1 :]
    if changed == SECRET:
        return
    with pytest.raises(InvalidTicketSecretError):
        SIGNER.verify(changed)


def test_rotation_keeps_old_tickets_valid_and_signs_with_the_new_key(tmp_path: Path):
    """Given a key directory and a ticket signed with its key; when the key is rotated;
    then new secrets name the new key, the old secret still verifies, and the old private
    key is gone (only its public half is kept)."""
    directory = KeyDirectory(tmp_path / "ticket-keys")
    directory.ensure()
    before = Ed25519TicketSigner(directory.load(), directory)
    old_kid = before.current_kid()
    old_secret = before.sign(TICKET, SHOW, "A-1-1")

    new_kid = directory.rotate()
    after = Ed25519TicketSigner(directory.load(), directory)

    assert new_kid != old_kid
    assert after.current_kid() == new_kid
    assert after.verify(old_secret).kid == old_kid
    assert after.verify(after.sign(TICKET, SHOW, "A-1-1")).kid == new_kid
    assert set(after.public_keys()) == {old_kid, new_kid}
    assert not (directory.path / f"{old_kid}.key").exists()
    assert (directory.path / f"{old_kid}.pub").exists()


def test_a_running_signer_picks_up_a_rotation(tmp_path: Path, monkeypatch):
    directory = KeyDirectory(tmp_path / "ticket-keys")
    directory.ensure()
    running = Ed25519TicketSigner(directory.load(), directory)
    elsewhere = KeyDirectory(directory.path)
    new_kid = elsewhere.rotate()
    rotated = Ed25519TicketSigner(elsewhere.load(), elsewhere)
    monkeypatch.setattr("infra.ticket_signing.RELOAD_SECONDS", 0.0)

    assert running.verify(rotated.sign(TICKET, SHOW, "A-1-1")).kid == new_kid
    assert running.current_kid() == new_kid


def test_keys_in_the_data_dir_are_owner_only_and_kept(tmp_path: Path):
    first = Ed25519TicketSigner.from_settings(Settings(data_dir=tmp_path))
    again = Ed25519TicketSigner.from_settings(Settings(data_dir=tmp_path))

    key_dir = tmp_path / "ticket-keys"
    [private] = list(key_dir.glob("*.key"))
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_dir).st_mode) == 0o700
    assert first.current_kid() == again.current_kid()


def test_a_configured_key_signs_and_older_public_keys_verify():
    old = Ed25519PrivateKey.generate()
    new = Ed25519PrivateKey.generate()
    old_secret = Ed25519TicketSigner(key_set(old)).sign(TICKET, SHOW, "GA")
    pem = new.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    old_public = base64.b64encode(
        old.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()

    signer = Ed25519TicketSigner.from_settings(
        Settings(ticket_signing_key=SecretStr(pem), ticket_public_keys=old_public)
    )

    assert signer.verify(old_secret).place == "GA"
    assert len(signer.public_keys()) == 2


def test_a_raw_base64_key_is_read_and_a_bad_one_refused():
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )

    parsed = parse_private_key(base64.b64encode(raw).decode())

    assert (
        parsed.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        == raw
    )
    with pytest.raises(TicketKeyError):
        parse_private_key("not a key")


def test_a_ticket_of_another_show_names_that_show():
    other_show = uuid4()

    assert SIGNER.verify(SIGNER.sign(TICKET, other_show, "A-1-1")).show_id == other_show
