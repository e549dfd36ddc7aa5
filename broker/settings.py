"""Typed broker settings, resolved from opsbus.toml, OPSBUS_* environment and CLI flags."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from broker.errors import InvalidConfig
from broker.filters.limits import DEFAULT_LIMITS, limits_of
from broker.numbers import MAX_ID, NumberError, whole_number

DURABILITY_LEVELS = ("full", "normal", "off")


@dataclass(frozen=True)
class Settings:
    """Everything `opsbus serve` can be told. Each field is also `OPSBUS_<NAME>` and `--<name>`."""

    listen: str = "127.0.0.1:8787"
    """host:port the HTTP API binds to."""
    data_dir: str = ".opsbus"
    """Folder holding the SQLite database."""
    config: str | None = None
    """Path of opsbus.toml (routes, queues, subscriptions, ...); watched and reloaded."""
    config_revision: str | None = None
    """Revision of the config file, compared as text (e.g. `2026-11-29.1`): replicas on
    one store apply their file at start-up only if it is not older than the one in
    effect (default: the file's modification time)."""
    store: str = "sqlite"
    """Store backend: `sqlite` (embedded, in data_dir) or a `postgresql://user@host:port/db`
    URL shared by several replicas (see docs/postgres.md)."""
    durability: str = "full"
    """SQLite synchronous level: `full` (fsync at each commit), `normal` (WAL may lose the
    last commits on power loss, never corrupts), `off` (tests and benchmarks only)."""
    max_event_bytes: int = 256 * 1024
    """Largest single event accepted (serialized JSON)."""
    max_request_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted."""
    max_batch_events: int = 1000
    """Most events in one batched publish."""
    hop_limit: int = 8
    """Derived-event chain length after which an event is stored but not routed."""
    max_descendants: int = 100
    """Most events one root event may cause, directly or through others (dead letters,
    todo changes, action results, ...), its one `opsbus.loop.detected` notice included;
    later ones are not stored."""
    heartbeat_s: float = 15.0
    """Seconds between SSE heartbeat comments."""
    stream_buffer: int = 1024
    """Events buffered per live subscriber before it falls back to reading from the store."""
    stream_write_timeout_s: float = 30.0
    """A stream client that accepts no bytes for this long is dropped (it resumes by seq)."""
    stream_buffer_bytes: int = 256 * 1024
    """Bytes queued for one stream client beyond what its socket accepted: a live reader
    that falls further behind is dropped with a comment telling it to resume with
    Last-Event-ID (it loses nothing: the log is the truth), so a stalled reader costs at
    most this much memory, given back when it is dropped."""
    stream_socket_buffer_bytes: int = 128 * 1024
    """Kernel send buffer of a stream's socket (SO_SNDBUF; Linux doubles it, up to
    net.core.wmem_max): without it the kernel grows each stalled reader's buffer to
    megabytes. It caps a stream's rate at about this much per round trip (1.3 MB/s per
    100 ms), far above any event stream's."""
    max_streams: int = 1000
    """Most open event streams (`/v1/stream`) and waiting pull receives (`wait_s` > 0)
    together; past it a new one is refused with 503 and Retry-After."""
    max_streams_per_principal: int = 1000
    """Most open streams and waiting pull receives of one token (all callers are one,
    `local`, with authentication off); past it a new one is refused with 429."""
    max_connections: int = 10_000
    """Most open HTTP connections; past it a new connection is answered 503 with
    Retry-After and closed. Keep it below the process's open-file limit."""
    keepalive_timeout_s: float = 30.0
    """An HTTP connection idle this long (no request in progress, none sent yet) is
    closed. Streams and waiting pull receives are not idle."""
    max_batch_commit: int = 2000
    """Most events the writer commits in one transaction."""
    scan_budget_events: int = 2000
    """Most stored events one filtered `GET /v1/events` examines; past it the page found so
    far is answered with `next_after` (the last seq examined) to continue from, so a filter
    that matches little costs the same bounded time whatever the log's size."""
    scan_budget_ms: float = 5.0
    """Most milliseconds one filtered `GET /v1/events` spends examining stored events
    (checked every few events once a first page of them was examined); past it the
    page found so far is answered with `next_after`, as with `scan_budget_events`, so a
    listing's latency stays bounded whatever the filter costs to evaluate."""
    allow_private_targets: bool = False
    """Let webhooks, actions, plugins and proxy mounts call loopback and private addresses
    (never link-local/metadata)."""
    delivery_poll_s: float = 1.0
    """Seconds between checks of the store for due webhook retries, action jobs and expired
    pull leases (commits wake the dispatchers at once; this bounds timer-driven work)."""
    delivery_concurrency: int = 64
    """Most webhook calls, and separately most action calls, in flight at once."""
    auth: bool = True
    """Authenticate API requests (the default): the broker writes an admin token to
    `<data_dir>/admin.token` and every request needs a token with the right scope.
    `--no-auth` (or `OPSBUS_NO_AUTH=1`, `[server] auth = false`) opens the API to any
    local process and any web page the operator visits: for tests only."""
    token: str | None = None
    """A further admin token, accepted besides `<data_dir>/admin.token`."""
    allowed_origins: str | None = None
    """Browser origins (`https://console.example`, comma-separated; a list in TOML) that
    may call the API besides the broker's own. A request with any other `Origin` header
    is refused."""
    todo_sweep_s: float = 1.0
    """Seconds between checks for expired claim leases and ended snoozes (shortened to a
    quarter of the shortest queue lease)."""
    log_level: str = "info"
    """Logging level."""
    filter_max_length: int = DEFAULT_LIMITS.max_length
    """Longest filter accepted, in characters: a CESQL expression, or all the strings of a
    dialect object together (routes, subscriptions, `filter=` and `q=` parameters, ...)."""
    filter_max_nodes: int = DEFAULT_LIMITS.max_nodes
    """Most syntax nodes in one filter: CESQL literals, names, operators and calls, plus
    all/any/not objects, exact/prefix/suffix entries and search words. Bounds the time to
    compile and evaluate a filter."""
    filter_max_depth: int = DEFAULT_LIMITS.max_depth
    """Deepest nesting in a CESQL expression (operators, parentheses, calls, IN sets inside
    one another); at most 64."""
    filter_max_in_items: int = DEFAULT_LIMITS.max_in_items
    """Most elements in one CESQL `IN (...)` set."""
    filter_max_dialect_depth: int = DEFAULT_LIMITS.max_dialect_depth
    """Deepest nesting of the `all`, `any` and `not` filter dialects; at most 64."""
    test_clock: bool = False
    """Tests only: run on a manual clock that moves only when `POST /v1/test/clock`
    advances it (refused, 404, unless this is set). Never in production."""
    wal_max_bytes: int = 64 * 1024 * 1024
    """The SQLite write-ahead log is checkpointed and truncated once it grows past this
    size, as soon as no reader holds an older snapshot (only a backup or an outside
    reader can hold one for long: the broker's own reads are short transactions)."""
    wal_checkpoint_bytes: int = 16 * 1024 * 1024
    """Each time the SQLite write-ahead log holds this much not yet copied back into the
    database, a background thread copies it while commits go on; the log restarts once
    it holds twice this, and past 4 times this (or `wal_max_bytes`) the committing
    thread finishes the copy itself, so the log stays bounded however fast events come."""
    log_partition: str = "1d"
    """The period the event log is filed by (a duration: `1d`, `6h`): the unit of the dedupe
    window and of per-period retention. A bus taking more than ~10 M events a day should use
    hours."""
    dedupe_window: str = "2"
    """How many periods of `log_partition` a repeated (source, id) is recognised for: the
    current and the previous by default, i.e. at least 24 and at most 48 hours. A repeat
    outside the window is stored as a new event (new seq, `duplicate: false`). `forever`
    keeps (source, id) unique for the life of the log, at an ingest cost that grows with
    the log (docs/storage.md)."""
    retention_max_age: str = ""
    """Events older than this (a duration such as `30d`) are removed by retention; empty:
    no age limit. Events something still needs are never removed (docs/operations.md)."""
    retention_max_events: int = 0
    """Most events kept; past it the oldest are removed. 0: no count limit."""
    retention_max_bytes: int = 0
    """Most bytes the log may use in the store; past it the oldest events are removed.
    0: no size limit."""
    retention_types: str = ""
    """Per-type ages that override `retention_max_age`, as `pattern=duration` pairs
    separated by commas (`deploy.*=365d, heartbeat.*=1d`); `*` matches any characters.
    In opsbus.toml it may also be a table: `retention_types = {"deploy.*" = "365d"}`."""
    retention_resume_window: str = "1h"
    """Events younger than this are never removed by the count or size limit, so a consumer
    that resumes within it loses nothing."""
    retention_batch: int = 2000
    """Events examined per retention step (one short write transaction each)."""
    maintenance_interval_s: float = 5.0
    """Seconds between housekeeping passes (log truncation when no commit triggers it)."""
    tls_cert: str | None = None
    """PEM certificate chain: serve HTTPS instead of HTTP (with tls_key)."""
    tls_key: str | None = None
    """PEM private key of tls_cert."""
    shutdown_grace_s: float = 10.0
    """On SIGTERM/SIGINT: seconds in-flight requests and deliveries get to finish before
    they are cancelled (cancelled deliveries are retried after the restart)."""
    catalog: bool = True
    """Keep the event catalog (per source and type: seen, rate, inferred data shape)
    and announce drift as `opsbus.catalog.changed`."""
    catalog_max_entries: int = 10_000
    """Most (source, type) pairs catalogued; events of later pairs are counted only in
    `opsbus_catalog_untracked_events_total`."""
    catalog_max_fields: int = 200
    """Most field paths kept in one shape (beyond it the shape is marked truncated)."""
    catalog_max_depth: int = 8
    """Nesting levels below `data` the shape looks into."""
    catalog_learn_events: int = 20
    """Events of a (source, type) the shape learns from before a difference is drift."""
    catalog_silence_factor: float = 3.0
    """A producer is silent once it has not arrived for its usual gap times this."""
    catalog_silence_min_s: float = 60.0
    """...and for at least this many seconds."""
    catalog_interval_s: float = 30.0
    """Seconds between catalog flushes and checks for silent producers."""
    catalog_sample_per_commit: int = 10
    """Most events of one (source, type) per commit whose data shape is inspected
    (spread over the batch; all of them when fewer): bounds the catalog's cost on ingest."""

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        """The port of `listen`; ValueError when it is not a port number."""
        return whole_number(self.listen.rsplit(":", 1)[1], maximum=65535)

    @property
    def origins(self) -> tuple[str, ...]:
        """allowed_origins as a tuple, without trailing slashes."""
        return tuple(o.strip().rstrip("/") for o in (self.allowed_origins or "").split(",")
                     if o.strip())

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "opsbus.db"


SETTING_NAMES = tuple(f.name for f in fields(Settings))


def coerce_setting(name: str, raw: Any, where: str) -> Any:
    """A setting's value from a file, the environment or a flag, as the field's type;
    InvalidConfig naming `where` and the setting otherwise."""
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            if isinstance(raw, str):
                return whole_number(raw.strip())
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            if abs(raw) > MAX_ID:
                raise NumberError(f"must be at most {MAX_ID}, got {raw:g}")
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(raw, dict) and name == "retention_types":
            return ", ".join(f"{k}={v}" for k, v in raw.items())
        if isinstance(raw, list) and name == "allowed_origins":
            return ",".join(str(item) for item in raw)
        return None if raw is None else str(raw)
    except NumberError as exc:
        raise InvalidConfig(f"{where}: {name} {exc}", field=name) from None
    except (TypeError, ValueError):
        raise InvalidConfig(f"{where}: {name} must be {kind.split(' ')[0]}, got {raw!r}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse opsbus.toml; a missing or broken file raises InvalidConfig naming it."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InvalidConfig(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"config file {path}: {exc}") from None
    except OSError as exc:
        raise InvalidConfig(f"config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidConfig(f"config file {path}: not UTF-8 text ({exc.reason} at byte"
                            f" {exc.start})") from None


def resolve_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Combine defaults < opsbus.toml `[server]` < OPSBUS_* environment < flags."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # where each value came from, to name it when refused
    config_path = flags.get("config") or environ.get("OPSBUS_CONFIG")
    if config_path is None and Path("opsbus.toml").exists():
        config_path = "opsbus.toml"
    if config_path:
        doc = load_config_file(config_path)
        server = doc.get("server", {})
        if not isinstance(server, dict):
            raise InvalidConfig(f"config file {config_path}: [server] must be a table")
        for key, raw in server.items():
            if key not in SETTING_NAMES:
                raise InvalidConfig(f"config file {config_path}: unknown setting server.{key}")
            values[key] = coerce_setting(key, raw, f"config file {config_path}")
            origins[key] = f"config file {config_path}"
        values["config"] = str(config_path)
    if "OPSBUS_NO_AUTH" in environ and "OPSBUS_AUTH" not in environ:
        values["auth"] = not coerce_setting("auth", environ["OPSBUS_NO_AUTH"],
                                            "environment OPSBUS_NO_AUTH")
        origins["auth"] = "environment OPSBUS_NO_AUTH"
    for name in SETTING_NAMES:
        env_name = f"OPSBUS_{name.upper()}"
        if env_name in environ:
            values[name] = coerce_setting(name, environ[env_name], f"environment {env_name}")
            origins[name] = f"environment {env_name}"
    for name, raw in flags.items():
        if name in SETTING_NAMES:
            values[name] = coerce_setting(name, raw, f"--{name.replace('_', '-')}")
            origins[name] = f"--{name.replace('_', '-')}"
    settings = Settings(**values)
    try:
        validate_settings(settings)
    except InvalidConfig as exc:
        where = origins.get(str(exc.extra.get("field")))
        if where is None:
            raise
        raise InvalidConfig(f"{where}: {exc.detail}", **exc.extra) from None
    return settings


def validate_settings(settings: Settings) -> None:
    """Reject settings that cannot work, naming the setting."""
    if settings.store != "sqlite":
        from broker.store.postgres.connection import check_url

        check_url(settings.store)
    if settings.durability not in DURABILITY_LEVELS:
        raise InvalidConfig(f"durability must be one of {', '.join(DURABILITY_LEVELS)}",
                            field="durability")
    try:
        settings.port  # noqa: B018 - parses the port out of listen
    except NumberError as exc:
        raise InvalidConfig(f"listen must be host:port; the port {exc}", field="listen"
                            ) from None
    except IndexError:
        raise InvalidConfig(f"listen must be host:port, got {settings.listen!r}",
                            field="listen") from None
    for name in ("max_event_bytes", "max_request_bytes", "max_batch_events", "hop_limit",
                 "max_descendants",
                 "delivery_poll_s", "delivery_concurrency", "heartbeat_s", "stream_buffer",
                 "stream_write_timeout_s", "stream_buffer_bytes",
                 "stream_socket_buffer_bytes", "max_streams", "max_streams_per_principal",
                 "max_connections", "keepalive_timeout_s",
                 "max_batch_commit", "scan_budget_events", "scan_budget_ms",
                 "todo_sweep_s",
                 "wal_max_bytes", "wal_checkpoint_bytes", "maintenance_interval_s",
                 "shutdown_grace_s",
                 "catalog_max_entries", "catalog_max_fields", "catalog_max_depth",
                 "catalog_learn_events", "catalog_silence_factor", "catalog_interval_s",
                 "retention_batch"):
        value = getattr(settings, name)
        # `not > 0` and isfinite: NaN and inf parse as floats and would spin or stall loops.
        if not value > 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise InvalidConfig(f"{name} must be a positive number, got {value!r}",
                                field=name)
    if not settings.catalog_silence_min_s >= 0:
        raise InvalidConfig("catalog_silence_min_s must be zero or more, got"
                            f" {settings.catalog_silence_min_s!r}", field="catalog_silence_min_s")
    for name in ("retention_max_events", "retention_max_bytes"):
        if getattr(settings, name) < 0:
            raise InvalidConfig(f"{name} must be 0 (no limit) or positive", field=name)
    from broker.retention.policy import policy_of

    policy_of(settings)  # durations, patterns, dedupe window and period
    limits_of(settings)  # each filter_* limit positive and within its ceiling
    if (settings.tls_cert is None) != (settings.tls_key is None):
        missing = "tls_key" if settings.tls_key is None else "tls_cert"
        raise InvalidConfig(f"tls_cert and tls_key go together: {missing} is missing",
                            field=missing)
    if not isinstance(logging.getLevelName(settings.log_level.upper()), int):
        raise InvalidConfig(f"log_level must be one of debug, info, warning, error, critical,"
                            f" got {settings.log_level!r}", field="log_level")


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of settings with some fields changed."""
    return dataclasses.replace(settings, **changes)


__all__ = ["SETTING_NAMES", "Settings", "coerce_setting", "load_config_file", "replace",
           "resolve_settings"]
