"""`ticketblitz tickets ...`: the keys that sign ticket secrets (infra/ticket_signing.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from infra.settings import Settings
from infra.ticket_signing import Ed25519TicketSigner, KeyDirectory, TicketKeyError
from ticketblitz.cli_support import CliError, reported_errors

tickets_app = typer.Typer(no_args_is_help=True, help="Ticket signing keys.")

KeysDir = Annotated[
    Path | None,
    typer.Option(help="the data dir whose ticket-keys/ to use (default: TICKETBLITZ_DATA_DIR)"),
]


@contextmanager
def _settings(data_dir: Path | None) -> Iterator[Settings]:
    with reported_errors():
        try:
            yield Settings() if data_dir is None else Settings(data_dir=data_dir)
        except TicketKeyError as error:
            raise CliError(str(error)) from None


@tickets_app.command("rotate-key")
def rotate_key(data_dir: KeysDir = None) -> None:
    """Make a new signing key for ticket secrets in <data dir>/ticket-keys/. Tickets signed
    with the old keys stay valid (their public keys are kept); new secrets use the new key,
    in running processes too within a second. Prints the new key's kid."""
    with _settings(data_dir) as settings:
        if settings.ticket_signing_key is not None:
            raise CliError(
                "TICKETBLITZ_TICKET_SIGNING_KEY is set: configure the new key there and add the "
                "old public key (`ticketblitz tickets public-keys`) to "
                "TICKETBLITZ_TICKET_PUBLIC_KEYS"
            )
        typer.echo(KeyDirectory.of(settings.data_dir).rotate())


@tickets_app.command("public-keys")
def public_keys(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object kid -> key")] = False,
    data_dir: KeysDir = None,
) -> None:
    """The public keys that verify ticket secrets (kid, base64 of the raw Ed25519 key), the
    current one first: what a scanner needs to check tickets offline."""
    with _settings(data_dir) as settings:
        directory = KeyDirectory.of(settings.data_dir)
        if settings.ticket_signing_key is None and not (directory.path / "current").exists():
            raise CliError(f"no ticket keys in {directory.path} yet (the first start makes one)")
        signer = Ed25519TicketSigner.from_settings(settings)
        current = signer.current_kid()
        keys = signer.public_keys()
        ordered = {current: keys[current]} | {k: v for k, v in sorted(keys.items())}
        if as_json:
            typer.echo(json.dumps({"current": current, "keys": ordered}))
            return
        for kid, key in ordered.items():
            typer.echo(f"{kid} {key}{'  (current)' if kid == current else ''}")
