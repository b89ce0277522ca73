"""Ticket secrets (what a ticket's QR code holds), signed with the deployment's Ed25519 key.

A secret is `TB1.<kid>.<payload>.<signature>`: `kid` names the key (8 base32 characters
of the SHA-256 of its public key), `payload` is the ticket id, the show id (16 bytes each) and the
place (seat id or GA section, UTF-8), `signature` the Ed25519 signature of everything before it
(so the version and the kid are signed too); both base64url without padding. About 150
characters, URL-safe, deterministic (Ed25519 is), and checkable offline with the public key.

Keys: `TICKETBLITZ_TICKET_SIGNING_KEY` (PEM, or base64 of the 32 raw private bytes), with the
public keys of earlier ones in `TICKETBLITZ_TICKET_PUBLIC_KEYS`; or else a key directory
`<data_dir>/ticket-keys/` (0700), created at first start: `<kid>.key` the current private key
(PKCS#8 PEM, 0600), `current` its kid, `<kid>.pub` the public keys of keys rotated out (base64
of the raw key). `rotate` makes a new current key and keeps only the public half of the old ones,
so tickets signed before still verify; processes sharing the directory pick the new key up
within a second.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from commands.errors import InvalidTicketSecretError
from commands.ports import SignedTicket
from infra.settings import Settings

VERSION = "TB1"
KEY_DIR = "ticket-keys"
CURRENT = "current"
MAX_SECRET_CHARS = 512  # longer input is refused before any work
MAX_PLACE_BYTES = 100
RELOAD_SECONDS = 1.0  # how often a directory's `current` is looked at again, at most
_ID_BYTES = 32  # ticket id + show id
_SIGNATURE_BYTES = 64
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
_KID = re.compile(r"[a-z2-7]{8}\Z")


class TicketKeyError(Exception):
    """A configured or stored ticket key cannot be read."""


def kid_for(raw_public: bytes) -> str:
    """The short name of a public key: 8 characters of base32 (no '-' to trip a shell)."""
    return base64.b32encode(hashlib.sha256(raw_public).digest())[:8].decode().lower()


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) Ed25519 private key, or base64 (standard or URL-safe) of its 32 bytes."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise TicketKeyError("the ticket signing key is not an Ed25519 key")
            return key
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "==", validate=False)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as error:
        raise TicketKeyError(f"the ticket signing key cannot be read: {error}") from None


def parse_public_keys(text: str | None) -> list[bytes]:
    """Comma-separated base64 raw Ed25519 public keys (32 bytes each)."""
    keys = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            raw = base64.b64decode(part.strip(), validate=True)
            Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error):
            raise TicketKeyError(f"not a base64 Ed25519 public key: {part.strip()!r}") from None
        keys.append(raw)
    return keys


@dataclass(frozen=True)
class KeySet:
    """The key that signs, and every public key that verifies (the signing one's included)."""

    signing: Ed25519PrivateKey
    kid: str
    verifying: Mapping[str, Ed25519PublicKey]
    raw_verifying: Mapping[str, bytes]  # the same keys' raw bytes, for libsodium


def key_set(signing: Ed25519PrivateKey, older: Iterable[bytes] = ()) -> KeySet:
    raws = [raw_public(signing), *older]
    verifying = {kid_for(raw): Ed25519PublicKey.from_public_bytes(raw) for raw in raws}
    return KeySet(signing, kid_for(raws[0]), verifying, {kid_for(raw): raw for raw in raws})


class KeyDirectory:
    """The ticket keys kept in a directory (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, data_dir: Path) -> KeyDirectory:
        return cls(data_dir / KEY_DIR)

    def ensure(self) -> None:
        """Create the directory and a first key unless there is one (two processes starting
        at once agree on one key: the first to name it `current` wins)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if (self.path / CURRENT).exists():
            return
        key = Ed25519PrivateKey.generate()
        kid = self._write_private(key)
        try:
            fd = os.open(self.path / CURRENT, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            (self.path / f"{kid}.key").unlink(missing_ok=True)
            return
        with os.fdopen(fd, "w") as out:
            out.write(kid + "\n")

    def load(self) -> KeySet:
        try:
            kid = (self.path / CURRENT).read_text().strip()
            if not _KID.match(kid):
                raise TicketKeyError(f"{self.path / CURRENT} names no key")
            signing = parse_private_key((self.path / f"{kid}.key").read_text())
            older = [
                raw_public(parse_private_key(p.read_text()))
                for p in sorted(self.path.glob("*.key"))
                if p.stem != kid
            ]
            retired = ",".join(p.read_text().strip() for p in sorted(self.path.glob("*.pub")))
            older += parse_public_keys(retired)
        except OSError as error:
            raise TicketKeyError(f"ticket keys in {self.path} cannot be read: {error}") from None
        return key_set(signing, older)

    def stamp(self) -> tuple[int, int]:
        """Changes when `current` is replaced (a rotation)."""
        try:
            stat = (self.path / CURRENT).stat()
        except OSError:
            return (0, 0)
        return (stat.st_ino, stat.st_mtime_ns)

    def rotate(self) -> str:
        """A new current key; the private halves of the old ones are replaced by their public
        halves (they verify the tickets signed before, and sign nothing more). Answers the new
        kid."""
        self.ensure()
        key = Ed25519PrivateKey.generate()
        kid = self._write_private(key)
        tmp = self.path / f"{CURRENT}.{kid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(kid + "\n")
        os.replace(tmp, self.path / CURRENT)
        for old in self.path.glob("*.key"):
            if old.stem == kid:
                continue
            public = base64.b64encode(raw_public(parse_private_key(old.read_text())))
            pub_path = old.with_suffix(".pub")
            pub_path.write_text(public.decode() + "\n")
            pub_path.chmod(0o644)
            old.unlink()
        return kid

    def _write_private(self, key: Ed25519PrivateKey) -> str:
        kid = kid_for(raw_public(key))
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.path / f"{kid}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return kid


class Ed25519TicketSigner:
    """Implements commands.ports.TicketSigner."""

    def __init__(self, keys: KeySet, directory: KeyDirectory | None = None) -> None:
        self._keys = keys
        self._directory = directory
        self._stamp = directory.stamp() if directory is not None else (0, 0)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Ed25519TicketSigner:
        """The configured key, or the data directory's keys (created at the first start)."""
        if settings.ticket_signing_key is not None:
            signing = parse_private_key(settings.ticket_signing_key.get_secret_value())
            return cls(key_set(signing, parse_public_keys(settings.ticket_public_keys)))
        directory = KeyDirectory.of(settings.data_dir)
        directory.ensure()
        return cls(directory.load(), directory)

    def current_kid(self) -> str:
        return self._current().kid

    def public_keys(self) -> dict[str, str]:
        keys = self._current()
        return {kid: base64.b64encode(raw_public(k)).decode() for kid, k in keys.verifying.items()}

    def sign(self, ticket_id: UUID, show_id: UUID, place: str) -> str:
        place_bytes = place.encode()
        if not 0 < len(place_bytes) <= MAX_PLACE_BYTES:
            raise ValueError(f"a ticket's place is 1 to {MAX_PLACE_BYTES} bytes: {place!r}")
        keys = self._current()
        head = f"{VERSION}.{keys.kid}.{_b64url(ticket_id.bytes + show_id.bytes + place_bytes)}"
        return f"{head}.{_b64url(keys.signing.sign(head.encode()))}"

    def verify(self, secret: str) -> SignedTicket:
        if not isinstance(secret, str) or len(secret) > MAX_SECRET_CHARS or not secret.isascii():
            raise _invalid()
        parts = secret.split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            raise _invalid()
        _, kid, payload_text, signature_text = parts
        key = self._verifying_key(kid)
        payload = _b64url_decode(payload_text)
        signature = _b64url_decode(signature_text)
        if key is None or payload is None or signature is None:
            raise _invalid()
        if len(signature) != _SIGNATURE_BYTES:
            raise _invalid()
        if not _ID_BYTES < len(payload) <= _ID_BYTES + MAX_PLACE_BYTES:
            raise _invalid()
        try:
            # libsodium (PyNaCl, cffi) lets go of the GIL while it verifies, so gates verify on
            # every core while the show's writer commits; `cryptography` held it (~145 us).
            crypto_sign_open(signature + secret[: -len(signature_text) - 1].encode(), key)
            place = payload[_ID_BYTES:].decode()
        except (BadSignatureError, UnicodeDecodeError):
            raise _invalid() from None
        return SignedTicket(UUID(bytes=payload[:16]), UUID(bytes=payload[16:32]), place, kid)

    def _verifying_key(self, kid: str) -> bytes | None:
        key = self._current().raw_verifying.get(kid)
        if key is None and _KID.match(kid):
            key = self._current(force=True).raw_verifying.get(kid)  # rotated meanwhile?
        return key

    def _current(self, force: bool = False) -> KeySet:
        """The keys, re-read when another process rotated them (checked at most once per
        RELOAD_SECONDS)."""
        directory = self._directory
        if directory is None:
            return self._keys
        now = time.monotonic()
        if now - self._checked_at < RELOAD_SECONDS and not force:
            return self._keys
        with self._lock:
            if now - self._checked_at < RELOAD_SECONDS:
                return self._keys
            self._checked_at = now
            stamp = directory.stamp()
            if stamp != self._stamp:
                self._keys = directory.load()
                self._stamp = stamp
        return self._keys


def _invalid() -> InvalidTicketSecretError:
    return InvalidTicketSecretError("not a valid ticket secret")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes | None:
    """Strict: only the canonical unpadded encoding of some bytes decodes (one secret, one
    spelling)."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64url(data) == text else None
