"""`opsbus token create|list|revoke`: named API tokens with scopes (admin)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from broker.auth.principal import SCOPES
from broker.cli import client_options, json_option
from broker.cli.output import print_json, print_table
from broker.client import OpsbusClient

SCOPE_HELP = ("publish: events (limit with --source); read: events, items, configuration;"
              " operate: claim, resolve, re-emit, comment, silence; force: release another"
              " operator's claim; admin: everything (configuration, tokens, backups)")


def register(sub: Any) -> None:
    token = sub.add_parser(
        "token", help="create, list, revoke named API tokens",
        description="Named API tokens with scopes. The broker keeps only a hash of each"
                    " secret; the secret is printed once, by create. Needs an admin token"
                    " (the broker's <data_dir>/admin.token is found on the same machine).")
    verbs = token.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("create", help="create a token and print its secret once",
                         description="Create a named token. Its name is the operator every"
                                     " todo change made with it records. " + SCOPE_HELP,
                         epilog="Example: opsbus token create ci --scope publish"
                                " --source 'ci/*'")
    p.add_argument("name", help="the token's name (the operator it acts as)")
    p.add_argument("--scope", dest="scopes", action="append", choices=SCOPES, required=True,
                   help="a scope to grant (repeat for several)")
    p.add_argument("--source", dest="sources", action="append", default=[],
                   help="a source pattern (fnmatch, e.g. 'ci/*') the publish scope is"
                        " limited to (repeat for several; default any source)")
    _common(p, create)
    p = verbs.add_parser("list", help="named tokens and their scopes (never secrets)",
                         description="Named tokens with scopes, source patterns, when and"
                                     " by whom they were created.")
    _common(p, list_tokens)
    p = verbs.add_parser("revoke", help="revoke a token: refused from its next request on",
                         description="Revoke a named token; every replica refuses it from"
                                     " then on.")
    p.add_argument("name")
    _common(p, revoke)


def _common(parser: argparse.ArgumentParser, func: Any) -> None:
    client_options(parser)
    json_option(parser)
    parser.set_defaults(func=func)


async def create(args: argparse.Namespace) -> int:
    async with OpsbusClient(args.url, args.token) as client:
        made = await client.create_token(args.name, args.scopes, args.sources)
    if args.json:
        print_json(made)
    else:
        print(made["secret"])
        print(f"token {made['name']!r} ({', '.join(made['scopes'])}) created; the secret"
              " above is shown only now", file=sys.stderr)
    return 0


async def list_tokens(args: argparse.Namespace) -> int:
    async with OpsbusClient(args.url, args.token) as client:
        found = await client.tokens()
    if args.json:
        print_json(found)
    else:
        print_table([[t["name"], ",".join(t["scopes"]), ",".join(t["sources"]) or "*",
                      t["created_at"], t["created_by"]] for t in found],
                    ["name", "scopes", "sources", "created", "by"])
    return 0


async def revoke(args: argparse.Namespace) -> int:
    async with OpsbusClient(args.url, args.token) as client:
        await client.revoke_token(args.name)
    if args.json:
        print_json({"revoked": args.name})
    else:
        print(f"token {args.name!r} revoked")
    return 0
