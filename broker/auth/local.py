"""The admin token file in the data directory, and how local clients find a token.

The broker writes `<data_dir>/admin.token` (mode 0600) on first start; the CLI and the
console on the same machine read it, so a fresh install is authenticated with nothing
to set up. Only the file's owner (and root) can read it: being able to read it is what
makes a local user the admin."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import yarl

from broker.auth.tokens import new_secret

log = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin.token"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def ensure_admin_token(data_dir: str | Path) -> str:
    """The data directory's admin secret, created (mode 0600) when missing."""
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # Readable by others means anyone on the host is admin: close it, and say so.
            log.warning("%s was readable by other users (mode %o): set to 0600", path, mode)
            path.chmod(0o600)
        secret = path.read_text(encoding="utf-8").strip()
        if secret:
            return secret
        path.unlink()
        return ensure_admin_token(data_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        secret = new_secret()
        fh.write(secret + "\n")
    log.info("created the admin token in %s (mode 0600)", path)
    return secret


def is_loopback(url: str) -> bool:
    try:
        return (yarl.URL(url).host or "") in LOOPBACK
    except ValueError:
        return False


def local_data_dir(environ: Mapping[str, str]) -> Path:
    """Where a broker started from this directory keeps its data: `OPSBUS_DATA_DIR`,
    else `[server] data_dir` of the config file (`OPSBUS_CONFIG` or ./opsbus.toml),
    else `.opsbus`."""
    if environ.get("OPSBUS_DATA_DIR"):
        return Path(environ["OPSBUS_DATA_DIR"])
    config = environ.get("OPSBUS_CONFIG") or ("opsbus.toml" if Path("opsbus.toml").exists()
                                             else None)
    if config:
        import tomllib

        try:
            server = tomllib.loads(Path(config).read_text(encoding="utf-8")).get("server")
        except (OSError, ValueError):
            server = None
        if isinstance(server, dict) and isinstance(server.get("data_dir"), str):
            return Path(server["data_dir"])
    return Path(".opsbus")


def context_token(url: str, environ: Mapping[str, str]) -> str | None:
    """The token of the console's default context (`console.toml`) when it is for `url`."""
    import tomllib

    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    try:
        doc = tomllib.loads((Path(base).expanduser() / "opsbus" / "console.toml")
                            .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    contexts = doc.get("contexts")
    chosen = contexts.get(doc.get("default")) if isinstance(contexts, dict) else None
    if (isinstance(chosen, dict) and isinstance(chosen.get("token"), str)
            and str(chosen.get("url", "http://127.0.0.1:8787")).rstrip("/") == url.rstrip("/")):
        return str(chosen["token"])
    return None


def find_token(url: str, environ: Mapping[str, str]) -> str | None:
    """The token a CLI command uses when not given one: the console's default context
    for this URL, else the admin token of a broker on this machine."""
    return context_token(url, environ) or local_token(url, environ)


def local_token(url: str, environ: Mapping[str, str], data_dir: str | Path | None = None
                ) -> str | None:
    """The admin token of a broker on this machine, read from its data directory; None
    for a remote URL (the local admin secret is never sent elsewhere) or no file."""
    if not is_loopback(url):
        return None
    path = Path(data_dir or local_data_dir(environ)) / ADMIN_TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None
