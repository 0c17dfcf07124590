"""``huiyuan keys …``: API keys (create, list, revoke) and PII key rotation."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from huiyuan.auth import service as auth
from huiyuan.cli.common import console, database
from huiyuan.kit.scope import SYSTEM
from huiyuan.tenancy.repository import TenancyRepository

app = typer.Typer(help="API keys and encryption keys", no_args_is_help=True)
DbOption = Annotated[str | None, typer.Option("--db", help="Database URL")]


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for")],
    scope: Annotated[list[str], typer.Option("--scope", help="Permission, repeatable (e.g. members:read)")],
    brand: Annotated[str | None, typer.Option(help="Brand code; omit for a platform key")] = None,
    db: DbOption = None,
) -> None:
    """Issue an API key. The secret is printed once."""
    database_ = database(db)
    with database_.unit_of_work() as s:
        brand_id = None
        if brand:
            row = TenancyRepository(s).brand_by_code(brand)
            if row is None:
                raise typer.BadParameter(f"no brand '{brand}'")
            brand_id = row.id
        issued = auth.create_api_key(s, actor=SYSTEM, name=name, scopes=scope, brand_id=brand_id)
        console.print(f"key id {issued.key.id}: [bold]{issued.secret}[/bold]")
        console.print("[yellow]Store it now; it is not shown again.[/yellow]")


@app.command("list")
def list_keys(db: DbOption = None) -> None:
    """List API keys (never their secrets)."""
    with database(db).unit_of_work(write=False) as s:
        table = Table("id", "brand", "name", "prefix", "scopes", "last used", "revoked")
        for k in auth.list_api_keys(s):
            table.add_row(
                str(k.id),
                str(k.brand_id or "platform"),
                k.name,
                k.prefix,
                ",".join(k.scopes),
                str(k.last_used_at or "-"),
                str(k.revoked_at or "-"),
            )
        console.print(table)


@app.command("revoke")
def revoke(key_id: int, db: DbOption = None) -> None:
    """Revoke an API key."""
    with database(db).unit_of_work() as s:
        auth.revoke_api_key(s, actor=SYSTEM, key_id=key_id)
    console.print(f"key {key_id} revoked")


@app.command("generate-pii-key")
def generate_pii_key() -> None:
    """Print a new Fernet key for HUIYUAN_PII_KEYS (put it first, keep the old ones after it)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@app.command("rotate-pii")
def rotate_pii(db: DbOption = None) -> None:
    """Re-encrypt every PII token under the newest key of HUIYUAN_PII_KEYS (resumable).

    Run it after every process has the new key list (newest first), so nothing writes under an old key.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from huiyuan.members.privacy import UndecryptableToken, rotate_pii_tokens
    from huiyuan.settings import get_settings

    if len(get_settings().fernet_keys()) < 2:
        console.print("[yellow]Only one PII key is configured: tokens are re-encrypted under it.[/yellow]")
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.advance(tasks[table], done)

        try:
            rewritten = rotate_pii_tokens(database(db), progress)
        except UndecryptableToken as exc:
            # Chunks done so far are committed; with the missing key put back, a rerun continues.
            console.print(f"[red]{exc}[/red]: put the missing key back into HUIYUAN_PII_KEYS and rerun")
            raise typer.Exit(1)
    table = Table("table", "rows re-encrypted")
    for name, count in rewritten.items():
        table.add_row(name, str(count))
    console.print(table)
    # Processes still running with the old key list may write tokens under the old key meanwhile.
    console.print("[green]done[/green]: once every process runs with this key list, drop the older keys")
