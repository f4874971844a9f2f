"""``vitrine keys``: create, revoke and list API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from vitrine.cli.common import fail, open_vitrine, print_json

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who uses the key, e.g. storefront.")],
    scope: Annotated[
        str, typer.Option(help="read, write or admin; or storefront (a key for shop pages).")
    ] = "read",
    origin: Annotated[
        list[str] | None,
        typer.Option(help="Storefront keys: a page origin allowed to use it; repeatable."),
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(help="Storefront keys: requests per second (default: api_rate_limit)."),
    ] = None,
) -> None:
    """Create an API key; it is printed once, only its hash is kept."""
    from vitrine.accounts.keys import KeyService

    vitrine = open_vitrine()
    try:
        info, key = KeyService(vitrine.engine).create(name, scope, origin or (), rate_limit)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(
        f"created key {info.prefix} ({info.name}, scope {info.scope}); store it now:", err=True
    )
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(name_or_prefix: Annotated[str, typer.Argument(help="Key name or prefix.")]) -> None:
    """Revoke API keys by name or prefix."""
    from vitrine.accounts.keys import KeyService

    vitrine = open_vitrine()
    count = KeyService(vitrine.engine).revoke(name_or_prefix)
    if count == 0:
        fail(f"no active key named or prefixed {name_or_prefix!r}")
    typer.echo(f"revoked {count} key(s)")


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (names, prefixes, scopes; never the keys)."""
    from vitrine.accounts.keys import KeyService

    vitrine = open_vitrine()
    print_json(
        [
            {
                "name": k.name,
                "prefix": k.prefix,
                "scope": k.scope,
                **(
                    {"origins": list(k.origins), "rate_limit": k.rate_limit} if k.storefront else {}
                ),
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in KeyService(vitrine.engine).list()
        ]
    )
