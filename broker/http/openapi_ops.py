"""What each API operation takes and answers: the table `/v1/openapi.json` is built from.

Keyed by (method, path) as the OpenAPI document names them: a route parameter that
admits a few literals (`{verb:pause|resume}`) is one path per literal, and the generic
configuration endpoints (`/v1/{kind}`) are one path per registered kind. A test checks
that every route the app serves has an entry here, so a new endpoint is documented
before it lands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.http.openapi_schemas import INT, STR, Schema, ref

JSON = "application/json"
Answer = tuple[str, Schema | None]
"""(description, schema of the JSON body or None for no body)."""


@dataclass(frozen=True)
class Op:
    """One operation: its id, what it takes and what it answers on success."""

    id: str
    ok: dict[str, Answer]
    """Success statuses; errors are problem documents (`default`)."""
    body: dict[str, Schema] | None = None
    """Request media types -> schema."""
    body_required: bool = True
    query: tuple[tuple[str, Schema, str], ...] = ()
    tag: str = "events"
    auth: str = "bearer"
    """`bearer` (the API token), `none` (open) or `source` (the source's own check)."""
    summary: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None
    """The token scope a bearer operation needs (`read` for a GET, `admin` for any other
    method unless named here); `any` is any valid token."""

    def needs(self, method: str) -> str | None:
        """The scope this operation needs by `method`; None when it takes no API token."""
        if self.auth != "bearer":
            return None
        return self.scope or ("read" if method in ("GET", "HEAD") else "admin")


CONFIG_KINDS_DOC = "routes, queues, subscriptions, actions or proxy mounts"
CE_STRUCTURED = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
AFTER = ("after", INT, "answer items after this cursor")
LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size")
FILTER = ("filter", STR, "a CESQL expression events must match")
SEARCH = ("q", STR, "free-text search: every word (or \"quoted phrase\") in type, source,"
                    " subject or data, ignoring case")
BOOL_QUERY: dict[str, Any] = {"type": "string", "enum": ["true", "false", "1", "0", "yes",
                                                         "no"]}

OPERATIONS: dict[tuple[str, str], Op] = {
    # -- operations ----------------------------------------------------------------------
    ("GET", "/healthz"): Op("healthz", {"200": ("The process answers", ref("Health"))},
                            tag="operations", auth="none"),
    ("GET", "/readyz"): Op("readyz", {"200": ("Ready", ref("Health"))},
                           tag="operations", auth="none"),
    ("GET", "/metrics"): Op("metrics", {"200": ("Prometheus text exposition", None)},
                            tag="operations", auth="none",
                            extra={"content": "text/plain"}),
    ("GET", "/v1/openapi.json"): Op("openapi", {"200": ("This document", ref("OpenAPI"))},
                                    tag="operations"),
    ("GET", "/v1/plugins"): Op("list_plugins", {"200": ("Loaded plugins", ref("Plugins"))},
                               tag="operations"),
    ("GET", "/v1/test/clock"): Op("read_test_clock",
                                  {"200": ("The manual clock", ref("TestClock"))},
                                  tag="operations",
                                  summary="Tests only: a broker started with --test-clock"),
    ("POST", "/v1/test/clock"): Op("advance_test_clock",
                                   {"200": ("Moved; due timers fired", ref("TestClock"))},
                                   body={JSON: ref("TestClockAdvance")}, tag="operations",
                                   summary="Tests only: move the manual clock forward"),
    ("GET", "/v1/config/status"): Op("config_status",
                                     {"200": ("Configuration load state", ref("ConfigStatus"))},
                                     tag="config"),
    ("GET", "/v1/whoami"): Op("whoami", {"200": ("The caller's token: name, scopes, source"
                                                 " patterns", ref("Principal"))},
                              tag="operations", scope="any"),
    ("GET", "/v1/tokens"): Op("list_tokens", {"200": ("Named tokens, never their secrets",
                                                      ref("TokenList"))}, tag="operations",
                              scope="admin"),
    ("POST", "/v1/tokens"): Op("create_token", {"201": ("Created; `secret` is shown this once",
                                                        ref("NewTokenAnswer"))},
                               body={JSON: ref("NewToken")}, tag="operations"),
    ("DELETE", "/v1/tokens/{name}"): Op("revoke_token", {"204": ("Revoked", None)},
                                        tag="operations"),
    ("POST", "/v1/admin/backup"): Op(
        "backup", {"200": ("The backup: a consistent SQLite database file; Opsbus-Backup-*"
                           " headers give its events, first/last seq and schema version",
                           None)},
        body_required=False, tag="operations",
        extra={"content": "application/vnd.sqlite3"}),
    ("POST", "/v1/admin/store/check"): Op(
        "store_check", {"200": ("The check ran; `ok` says whether it found problems",
                                ref("StoreCheck"))},
        body_required=False, tag="operations",
        query=(("quick", BOOL_QUERY, "quick_check: skip index cross-checks"),)),
    # -- events --------------------------------------------------------------------------
    ("POST", "/v1/events"): Op(
        "publish_events",
        {"201": ("Stored (binary or structured mode)", ref("PublishResult")),
         "200": ("Already stored (duplicate), dropped by a transform, or a batch",
                 {"anyOf": [ref("PublishResult"), {"type": "array",
                                                   "items": ref("PublishResult")}]})},
        body={CE_STRUCTURED: ref("CloudEvent"), CE_BATCH: ref("CloudEventBatch"),
              "*/*": {"description": "Binary mode: the data, with ce-* headers"}},
        scope="publish",
    ),
    ("GET", "/v1/events"): Op(
        "list_events", {"200": ("A page of stored events", ref("EventPage"))},
        query=(("after", INT, "answer events after this seq"), LIMIT, FILTER, SEARCH,
               ("order", {"enum": ["asc", "desc"]}, "seq order"),
               ("type", STR, ""), ("source", STR, ""), ("subject", STR, ""), ("id", STR, ""),
               ("correlationid", STR, ""), ("causationid", STR, ""),
               ("since", STR, "a duration (24h) or RFC 3339 time"),
               ("until", STR, "a duration (24h) or RFC 3339 time")),
    ),
    ("GET", "/v1/events/{seq}"): Op("get_event",
                                    {"200": ("The event and the targets it hit",
                                             ref("StoredEvent")),
                                     "410": ("Removed by retention: the problem names"
                                             " `retained_from`, where the retained log"
                                             " starts", ref("Problem"))}),
    ("GET", "/v1/stream"): Op(
        "stream_events",
        {"200": ("Server-Sent Events: `id: <seq>`, `event: cloudevent`, `data: <event>`;"
                 " the filter's warnings, if any, in the `Opsbus-Filter-Warnings` header"
                 " (a JSON array). Resuming below the retained range, the first message"
                 " is `event: gap` with `data: {after, retained_from, reason}`", None)},
        query=(FILTER, SEARCH, ("after", INT, "resume after this seq (or Last-Event-ID)")),
        extra={"content": "text/event-stream"},
    ),
    ("POST", "/v1/filters/evaluate"): Op(
        "evaluate_filter", {"200": ("The value, or the error, and the filter's warnings",
                                    ref("FilterEvaluation"))},
        body={JSON: {"type": "object"}}, tag="filters", scope="read"),
    ("GET", "/v1/catalog"): Op("list_catalog",
                               {"200": ("Every catalogued source and type",
                                        ref("CatalogList"))}, tag="catalog"),
    ("GET", "/v1/catalog/{source}/{type}"): Op(
        "get_catalog_entry", {"200": ("One source and type with its inferred data shape",
                                      ref("CatalogEntry"))}, tag="catalog",
        summary="One catalogued source and type (the source may hold slashes: the last"
                " path segment is the type)"),
    # -- sources -------------------------------------------------------------------------
    ("POST", "/v1/sources/{name}"): Op(
        "receive_source", {"200": ("Published events", ref("SourceAnswer"))},
        body={"*/*": {"description": "The foreign webhook payload (GitHub, Alertmanager...)"}},
        tag="sources", auth="source"),
    ("POST", "/v1/sources/{name}/{path}"): Op(
        "receive_source_path", {"200": ("Published events", ref("SourceAnswer"))},
        body={"*/*": {"description": "The foreign webhook payload (a mapping name in path)"}},
        tag="sources", auth="source"),
    # -- todos ---------------------------------------------------------------------------
    ("GET", "/v1/queues"): Op("list_queues", {"200": ("Queues with counts",
                                                      ref("QueueList"))}, tag="todos"),
    ("GET", "/v1/queues/{name}"): Op("get_queue", {"200": ("One queue", ref("Queue"))},
                                     tag="todos"),
    ("GET", "/v1/todos"): Op(
        "list_todos", {"200": ("A page of items", ref("TodoPage"))}, tag="todos",
        query=(("queue", STR, ""), ("owner", STR, ""),
               ("state", {"enum": ["open", "claimed", "snoozed", "resolved", "active"]}, ""),
               LIMIT, ("after", STR, "the `next` cursor of the previous page"))),
    ("GET", "/v1/todos/{id}"): Op("get_todo", {"200": ("The item, its events and history",
                                                       ref("TodoDetail"))}, tag="todos"),
    ("POST", "/v1/todos/{id}/{op}"): Op(
        "operate_todo", {"200": ("The changed item", ref("TodoChange"))}, tag="todos",
        body={JSON: ref("TodoOperation")}, body_required=False, scope="operate"),
    ("POST", "/v1/todos/{id}/actions/{action}"): Op(
        "run_quick_action", {"200": ("Finished", ref("QuickActionResult")),
                             "202": ("Still running", ref("QuickActionResult"))},
        body={JSON: ref("QuickAction")}, tag="todos", scope="operate"),
    ("POST", "/v1/silences"): Op("create_silence", {"201": ("Created", ref("Silence"))},
                                 body={JSON: ref("NewSilence")}, tag="todos",
                                 scope="operate"),
    ("GET", "/v1/silences"): Op("list_silences", {"200": ("Silences", ref("SilenceList"))},
                                query=(("all", BOOL_QUERY, "include expired ones"),),
                                tag="todos"),
    ("GET", "/v1/silences/{id}"): Op("get_silence", {"200": ("A silence", ref("Silence"))},
                                     tag="todos"),
    ("DELETE", "/v1/silences/{id}"): Op("expire_silence",
                                        {"200": ("Ended", ref("Silence"))},
                                        body={JSON: ref("Operator")}, body_required=False,
                                        query=(("operator", STR, ""),), tag="todos",
                                        scope="operate"),
    # -- delivery ------------------------------------------------------------------------
    ("GET", "/v1/subscriptions"): Op("list_subscriptions",
                                     {"200": ("Subscriptions", ref("SubscriptionList"))},
                                     tag="delivery"),
    ("GET", "/v1/subscriptions/{name}"): Op("get_subscription",
                                            {"200": ("One subscription", ref("Subscription"))},
                                            tag="delivery"),
    ("GET", "/v1/subscriptions/{name}/status"): Op(
        "get_subscription_status", {"200": ("State and counts", ref("SubscriptionStatus"))},
        tag="delivery"),
    ("GET", "/v1/subscriptions/{name}/deliveries"): Op(
        "list_deliveries", {"200": ("A page of deliveries", ref("DeliveryPage"))},
        query=(("state", STR, ""), AFTER, LIMIT), tag="delivery"),
    ("GET", "/v1/subscriptions/{name}/deliveries/{id}"): Op(
        "get_delivery", {"200": ("One delivery with its attempts", ref("Delivery"))},
        tag="delivery"),
    ("POST", "/v1/subscriptions/{name}/deliveries/{id}/retry"): Op(
        "retry_delivery", {"200": ("Requeued", ref("Delivery"))}, tag="delivery",
        scope="operate"),
    ("POST", "/v1/subscriptions/{name}/receive"): Op(
        "receive_pull", {"200": ("Leased events", ref("PullMessages"))},
        body={JSON: ref("PullReceive")}, body_required=False, tag="delivery", scope="read"),
    **{("POST", f"/v1/subscriptions/{{name}}/{verb}"): Op(
        f"{verb}_subscription", {"200": ("The subscription's status", ref("SubscriptionStatus"))},
        body={JSON: ref("Operator")}, body_required=False, tag="delivery", scope="operate")
       for verb in ("pause", "resume")},
    **{("POST", f"/v1/subscriptions/{{name}}/{verb}"): Op(
        f"{verb}_pull", {"200": ("How many leases were settled", ref("PullSettled"))},
        body={JSON: ref("PullSettle")}, tag="delivery", scope="read")
       for verb in ("ack", "release", "reject", "renew")},
    ("GET", "/v1/actions/{name}/jobs"): Op(
        "list_action_jobs", {"200": ("A page of jobs", ref("ActionJobPage"))},
        query=(AFTER, LIMIT), tag="delivery"),
    # -- configuration -------------------------------------------------------------------
    ("GET", "/v1/routes"): Op("list_routes", {"200": ("Routes", ref("RouteList"))},
                              tag="config"),
    ("POST", "/v1/routes/test"): Op("test_routes", {"200": ("What the routes would do",
                                                            ref("RouteTestResult"))},
                                    body={JSON: ref("RouteTest")}, tag="config",
                                    scope="read"),
    ("GET", "/v1/{kind}"): Op("list_{kind}", {"200": ("Objects of the kind",
                                                      {"type": "object"})}, tag="config"),
    ("POST", "/v1/{kind}"): Op("create_{singular}", {"201": ("Created", ref("ConfigObject"))},
                               body={JSON: ref("ConfigSpec")}, tag="config"),
    ("GET", "/v1/{kind}/{name}"): Op("get_{singular}", {"200": ("One object",
                                                                ref("ConfigObject"))},
                                     tag="config"),
    ("PUT", "/v1/{kind}/{name}"): Op("put_{singular}",
                                     {"200": ("Replaced", ref("ConfigObject")),
                                      "201": ("Created", ref("ConfigObject"))},
                                     body={JSON: ref("ConfigSpec")}, tag="config"),
    ("DELETE", "/v1/{kind}/{name}"): Op("delete_{singular}", {"204": ("Deleted", None)},
                                        tag="config"),
    # -- proxy ---------------------------------------------------------------------------
    **{(method, path): Op(
        f"proxy_{method.lower()}{'_path' if 'tail' in path else ''}",
        {"200": ("The upstream's answer, passed through", None)},
        body={"*/*": {}} if method in ("POST", "PUT", "PATCH") else None,
        body_required=False, tag="proxy",
        summary="Call the upstream of a proxy mount; the call is published as an event",
        extra={"content": "*/*"}, scope="read")
       for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
       for path in ("/proxy/{name}", "/proxy/{name}/{tail}")},
}
"""Every operation, by (method, OpenAPI path)."""

ANY_METHOD = {"/v1/sources/{name}": ("POST",), "/v1/sources/{name}/{path}": ("POST",),
              "/proxy/{name}": ("GET", "POST", "PUT", "PATCH", "DELETE"),
              "/proxy/{name}/{tail}": ("GET", "POST", "PUT", "PATCH", "DELETE")}
"""Routes registered for any method, and the methods the document names for them."""
