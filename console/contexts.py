"""Named broker contexts from `~/.config/opsbus/console.toml` (kubectl/k9s style)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broker.errors import BadRequest

DEFAULT_URL = "http://127.0.0.1:8787"


@dataclass(frozen=True)
class Context:
    """Where the console connects and as whom."""

    name: str | None
    url: str = DEFAULT_URL
    token: str | None = None
    operator: str | None = None


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
        unknown = set(spec) - {"url", "token", "operator"}
        if unknown:
            raise BadRequest(f"{path}: [contexts.{name}] has unknown keys: "
                             f"{', '.join(sorted(unknown))}")
        contexts[name] = Context(name, str(spec.get("url", DEFAULT_URL)),
                                 spec.get("token"), spec.get("operator"))
    default = doc.get("default")
    if default is not None and default not in contexts:
        raise BadRequest(f"{path}: default context {default!r} is not defined")
    return contexts, default


def resolve_context(name: str | None, *, url: str | None, token: str | None,
                    operator: str | None, environ: Mapping[str, str]) -> Context:
    """Flags win over the named (or default) context, which wins over built-in defaults."""
    contexts, default = load_contexts(config_path(environ))
    chosen = name or default
    if chosen is not None and chosen not in contexts:
        known = ", ".join(sorted(contexts)) or "none defined"
        raise BadRequest(f"unknown context {chosen!r} (known: {known}; "
                         f"see {config_path(environ)})")
    base = contexts.get(chosen) if chosen else None
    base = base or Context(None)
    return Context(base.name, url or base.url, token or base.token, operator or base.operator)
