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
