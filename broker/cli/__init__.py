"""The `opsbus` command line: one module per command group, errors as one line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from broker import __version__
from broker.errors import OpsbusError
from broker.numbers import MAX_ID, NumberError, whole_number

COMMAND_MODULES = (
    "broker.cli.serve",
    "broker.cli.emit",
    "broker.cli.tail",
    "broker.cli.consume",
    "broker.cli.subs",
    "broker.cli.todo",
    "broker.cli.routes",
    "broker.cli.catalog",
    "broker.cli.replay",
    "broker.cli.export",
    "broker.cli.store",
    "broker.cli.console",
    "broker.cli.up",
    "broker.cli.backup",
    "broker.cli.restore",
    "broker.cli.token",
)
"""Modules with `register(subparsers)`; each sets `func` (sync or async) on its parser."""

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"opsbus: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="opsbus", description="An event bus for operations teams.")
    parser.add_argument("--version", action="version", version=f"opsbus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "token", "") is None and isinstance(getattr(args, "url", None), str):
        import os

        from broker.auth.local import find_token

        args.token = find_token(args.url, os.environ)
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except KeyboardInterrupt:
        return 130
    except OpsbusError as exc:
        from broker.client import BrokerUnreachable

        print(f"opsbus: {exc.detail}", file=sys.stderr)
        return EXIT_UNREACHABLE if isinstance(exc, BrokerUnreachable) else EXIT_ERROR
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a file, folder or port the command needs: no traceback
        what = exc.strerror or str(exc)
        print(f"opsbus: {exc.filename}: {what}" if exc.filename else f"opsbus: {what}",
              file=sys.stderr)
        return EXIT_ERROR


def whole(minimum: int = 0, maximum: int = MAX_ID) -> Callable[[str], int]:
    """An argparse `type` for whole numbers: ASCII digits within [minimum, maximum], so a
    wrong value is a usage error naming the argument, never a traceback."""
    def parse(text: str) -> int:
        try:
            return whole_number(text, minimum=minimum, maximum=maximum)
        except NumberError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def client_options(parser: argparse.ArgumentParser) -> None:
    """--url and --token, shared by every command that talks to a broker."""
    import os

    parser.add_argument("--url", default=os.environ.get("OPSBUS_URL", "http://127.0.0.1:8787"),
                        help="broker URL (env OPSBUS_URL; default %(default)s)")
    parser.add_argument("--token", default=os.environ.get("OPSBUS_TOKEN"),
                        help="API bearer token (env OPSBUS_TOKEN; default: the console's"
                             " default context's token for this URL, else, for a broker"
                             " on this machine, its <data_dir>/admin.token)")


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
