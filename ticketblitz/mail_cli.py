"""`ticketblitz mail ...`: the e-mails the embedded SMTP server caught (`ticketblitz up` sends
every e-mail there; they are files in <data dir>/mail/, one .eml each, oldest first)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Annotated

import typer

from infra.settings import Settings
from ticketblitz.cli_support import CliError, DataDir, reported_errors
from ticketblitz.embedded import EmbeddedStack

mail_app = typer.Typer(no_args_is_help=True, help="The e-mails caught by the embedded server.")


def _messages(data_dir: Path | None) -> list[EmailMessage]:
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    folder = settings.data_dir.resolve() / "mail"
    if not folder.is_dir():
        raise CliError(f"no e-mails caught yet in {folder} (`ticketblitz up` catches them there)")
    return EmbeddedStack(settings.data_dir.resolve()).mailbox.messages()


def _one_line(text: object) -> str:
    return " ".join(str(text or "").split())


@mail_app.command("list")
def list_mail(
    to: Annotated[str | None, typer.Option(help="only those to this address")] = None,
    last: Annotated[int, typer.Option(min=1, help="the newest N")] = 20,
    data_dir: DataDir = None,
) -> None:
    """The caught e-mails, oldest first: number (for `mail show`), date, recipient, subject."""
    with reported_errors():
        messages = list(enumerate(_messages(data_dir), start=1))
        if to is not None:
            messages = [(n, m) for n, m in messages if to.lower() in str(m["To"]).lower()]
        for number, message in messages[-last:]:
            typer.echo(
                f"{number:>4}  {_one_line(message['Date'])}  {_one_line(message['To'])}  "
                f"{_one_line(message['Subject'])}"
            )
        if not messages:
            typer.echo("no e-mails", err=True)


@mail_app.command("show")
def show_mail(
    number: Annotated[int, typer.Argument(min=1, help="its number in `mail list`")],
    data_dir: DataDir = None,
) -> None:
    """One e-mail: its headers, its text and the names of its attachments."""
    with reported_errors():
        messages = _messages(data_dir)
        if number > len(messages):
            raise CliError(f"there are {len(messages)} e-mails; no number {number}")
        message = messages[number - 1]
        for header in ("Date", "From", "To", "Subject", "Message-ID"):
            typer.echo(f"{header}: {_one_line(message[header])}")
        body = message.get_body(preferencelist=("plain",))
        typer.echo("")
        typer.echo(body.get_content() if body is not None else "(no text part)")
        for part in message.iter_attachments():
            typer.echo(f"[attachment] {part.get_filename()} ({part.get_content_type()})")
