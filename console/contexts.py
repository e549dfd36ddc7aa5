"""Named broker contexts from `~/.config/opsbus/console.toml` (kubectl/k9s style)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BadRequest

DEFAULT_URL = "http://127.0.0.1:8787"
SCREENS = ("queues", "stream", "deliveries", "emit", "silences", "catalog")


@dataclass(frozen=True)
class Context:
    """Where the console connects and as whom."""

    name: str | None
    url: str = DEFAULT_URL
    token: str | None = None
    operator: str | None = None
    screen: str | None = None
    """The view the console opens on (queues unless said otherwise)."""
    bell: bool = True
    """Ring the terminal bell when a critical or high item opens."""


def config_path(environ: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/opsbus/console.toml`, or `~/.config/opsbus/console.toml`."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "opsbus" / "console.toml"


def load_contexts(path: Path) -> tuple[dict[str, Context], str | None]:
    """The contexts in the file and the name of the default one; none when no file.

    ```toml
    default = "prod"
    [contexts.prod]
    url = "https://opsbus.example"
    token = "..."
    operator = "jonas"
    screen = "queues"   # or stream, deliveries, emit, silences, catalog
    bell = false
    ```
    """
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadRequest(f"{path}: {exc}") from None
    contexts: dict[str, Context] = {}
    for name, spec in (doc.get("contexts") or {}).items():
        if not isinstance(spec, dict):
            raise BadRequest(f"{path}: [contexts.{name}] must be a table")
        unknown = set(spec) - {"url", "token", "operator", "screen", "bell"}
        if unknown:
            raise BadRequest(f"{path}: [contexts.{name}] has unknown keys: "
                             f"{', '.join(sorted(unknown))}")
        if not isinstance(spec.get("bell", True), bool):
            raise BadRequest(f"{path}: [contexts.{name}] bell must be true or false")
        screen = spec.get("screen")
        if screen is not None and screen not in SCREENS:
            raise BadRequest(f"{path}: [contexts.{name}] screen must be one of "
                             f"{', '.join(SCREENS)}")
        contexts[name] = Context(name, str(spec.get("url", DEFAULT_URL)),
                                 spec.get("token"), spec.get("operator"), screen,
                                 bool(spec.get("bell", True)))
    default = doc.get("default")
    if default is not None and default not in contexts:
        raise BadRequest(f"{path}: default context {default!r} is not defined")
    return contexts, default


def resolve_context(name: str | None, *, url: str | None, token: str | None,
                    operator: str | None, environ: Mapping[str, str],
                    screen: str | None = None, bell: bool | None = None) -> Context:
    """Flags win over the named (or default) context, which wins over built-in defaults.
    The default context applies only when no URL is given."""
    contexts, default = load_contexts(config_path(environ))
    # An explicit URL is another broker: the default context's token is not for it.
    chosen = name or (default if url is None else None)
    if chosen is not None and chosen not in contexts:
        known = ", ".join(sorted(contexts)) or "none defined"
        raise BadRequest(f"unknown context {chosen!r} (known: {known}; "
                         f"see {config_path(environ)})")
    base = contexts.get(chosen) if chosen else None
    base = base or Context(None)
    return Context(base.name, url or base.url, token or base.token, operator or base.operator,
                   screen or base.screen, base.bell if bell is None else bell)
