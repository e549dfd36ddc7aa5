"""JSON Schemas of the API's bodies, as OpenAPI 3.1 components (`#/components/schemas`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """An object with these properties; further members are allowed (the API may grow)."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
ANY: Schema = {}
OBJECT: Schema = {"type": "object"}
SEQ: Schema = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
TIME: Schema = {"type": "string", "description": "RFC 3339 timestamp"}
MOMENT: Schema = {"type": ["number", "string", "null"],
                  "description": "when it is due: epoch seconds or RFC 3339"}

SCHEMAS: dict[str, Schema] = {
    "Problem": obj(
        ("type", "title", "status", "detail"),
        type=STR, title=STR, status=INT, detail=STR, instance=STR,
        attribute=STR, index=INT, field=STR, parameter=STR, plugin=STR,
    ),
    "CloudEvent": {
        **obj(("specversion", "id", "source", "type"),
              specversion={"const": "1.0"}, id={"type": "string", "minLength": 1},
              source={"type": "string", "minLength": 1}, type={"type": "string", "minLength": 1},
              subject=STR, time=TIME, datacontenttype=STR, dataschema=STR, data=ANY,
              data_base64={"type": "string", "contentEncoding": "base64"}),
        "description": "A CloudEvents 1.0 event in the JSON format; extensions are further"
                       " members whose values are strings, integers or booleans.",
    },
    "CloudEventBatch": {**array(ref("CloudEvent")), "minItems": 1},
    "PublishResult": obj(
        ("seq", "id", "duplicate"),
        seq={**SEQ, "description": "0 when a transform dropped the event"}, id=STR,
        duplicate=BOOL, dropped=BOOL, conflict=STR,
    ),
    "StoredEvent": obj(
        ("seq", "recvtime", "event"),
        seq=SEQ, recvtime=TIME, routes=array(STR), event=ref("CloudEvent"),
        targets=array(obj(("route", "target"), route=STR, target=STR, detail=OBJECT)),
    ),
    "EventPage": obj(("events", "next_after"), events=array(ref("StoredEvent")),
                     next_after=nullable(SEQ), warnings=array(ref("FilterWarning")),
                     gap=obj(("after", "retained_from", "reason"), after=SEQ,
                             retained_from=SEQ, reason={"enum": ["retention"]})),
    "SourceAnswer": obj(("source", "events"), source=STR, events=array(ref("PublishResult"))),
    "FilterEvaluation": obj(("value", "error"), value=ANY, error=nullable(ANY),
                            warnings=array(ref("FilterWarning"))),
    "FilterWarning": obj(
        ("code", "message", "where"),
        code={"enum": ["unknownFunction", "notBoolean", "neverMatches", "bareName",
                       "notPrecedence"]},
        message=STR, position=nullable(obj(("line", "column"), line=INT, column=INT)),
        where={**STR, "description": "where in a dialect object: filter.any[1].sql"},
    ),
    "TodoItem": obj(
        ("id", "queue", "key", "state", "count", "first_seen", "last_seen", "event_seq"),
        id=INT, queue=STR, key=STR, title=STR, state={"enum": ["open", "claimed", "resolved"]},
        priority=nullable(STR), owner=nullable(STR), lease_expires=nullable(TIME),
        snoozed_until=nullable(TIME), count=INT, first_seen=TIME, last_seen=TIME,
        created_at=TIME, updated_at=TIME, resolved_at=nullable(TIME),
        resolution=nullable(OBJECT), event_seq=SEQ, first_event_seq=SEQ,
    ),
    "TodoPage": obj(("items", "next"), items=array(ref("TodoItem")), next=nullable(STR)),
    "TodoChange": obj(("item",), item=ref("TodoItem"), event=OBJECT),
    "TodoOperation": obj((), operator=STR, note=STR, force=BOOL, lease=ANY, until=ANY,
                         event=OBJECT),
    "TodoDetail": {"allOf": [ref("TodoItem"), obj(
        ("events", "history"), events=array(OBJECT), history=array(OBJECT),
        actions=array(ANY))]},
    "Queue": obj(("name", "open", "claimed", "snoozed", "resolved"), name=STR,
                 configured=BOOL, origin=nullable(STR), open=INT, claimed=INT, snoozed=INT,
                 resolved=INT, oldest_open_age_s=nullable(NUM)),
    "QueueList": obj(("queues",), queues=array(ref("Queue"))),
    "Silence": obj(("id", "matcher", "ends_at", "active"), id=INT, matcher=ANY,
                   queue=nullable(STR), comment=nullable(STR), author=STR, created_at=TIME,
                   ends_at=TIME, expired_by=nullable(STR), active=BOOL, remaining_s=INT),
    "NewSilence": obj(("operator",), operator=STR, matcher=ANY, queue=STR, comment=STR,
                      duration=ANY, ends_at=TIME),
    "SilenceList": obj(("silences",), silences=array(ref("Silence"))),
    "ConfigObject": {
        **obj(("name", "origin", "version", "updated_at"), name=STR,
              origin={"enum": ["file", "api"]}, version=INT, updated_at=TIME),
        "description": "A route, queue, subscription, action or proxy mount: its spec"
                       " members plus where it came from.",
    },
    "ConfigSpec": {**obj(("name",), name={"type": "string", "minLength": 1}),
                   "description": "The object's spec, as in opsbus.toml."},
    "ConfigStatus": OBJECT,
    "RouteList": obj(("routes",), routes=array(ref("ConfigObject"))),
    "RouteTest": obj((), route=OBJECT, events=array(OBJECT), history=OBJECT),
    "RouteTestResult": OBJECT,
    "SubscriptionStatus": obj(("name", "type", "state"), name=STR,
                              type={"enum": ["push", "pull"]}, state=STR, counts=OBJECT,
                              last_error=nullable(OBJECT)),
    "Subscription": {**obj(("name", "origin", "version", "status"), name=STR, origin=STR,
                           version=INT, updated_at=TIME, status=ref("SubscriptionStatus"))},
    "SubscriptionList": obj(("subscriptions",), subscriptions=array(ref("Subscription"))),
    "Delivery": obj(("id", "subscription", "seq", "state", "attempts"), id=INT,
                    subscription=STR, seq=SEQ, state=STR, attempts=INT,
                    next_at=MOMENT, last_status=nullable(INT),
                    last_error=nullable(STR), created_at=TIME, updated_at=TIME,
                    attempts_log=array(OBJECT)),
    "DeliveryPage": obj(("deliveries", "next"), deliveries=array(ref("Delivery")),
                        next=nullable(INT)),
    "Operator": obj((), operator=STR),
    "Principal": obj(("name", "scopes", "sources", "auth"), name=STR, scopes=array(STR),
                     sources=array(STR), auth=BOOL),
    "Token": obj(("name", "scopes", "sources"), name=STR, scopes=array(STR),
                 sources=array(STR), created_at=TIME, created_by=STR),
    "TokenList": obj(("tokens",), tokens=array(ref("Token"))),
    "NewToken": obj(("name", "scopes"), name=STR,
                    scopes=array({"enum": ["publish", "read", "operate", "force", "admin"]}),
                    sources=array(STR)),
    "NewTokenAnswer": obj(("name", "scopes", "sources", "secret"), name=STR,
                          scopes=array(STR), sources=array(STR), created_at=TIME,
                          created_by=STR, secret=STR),
    "PullReceive": obj((), max={"type": "integer", "minimum": 1}, wait_s={"type": ["number",
                       "string"]}, lease_s={"type": ["number", "string"]}),
    "PullMessages": array(obj(("lease", "seq", "event"), lease=STR, seq=SEQ,
                              delivery_count=INT, lease_expires_at=MOMENT,
                              event=ref("CloudEvent"))),
    "PullSettle": obj(("leases",), leases=array(STR), delay={"type": ["number", "string"]},
                      lease_s={"type": ["number", "string"]}),
    "PullSettled": OBJECT,
    "ActionJob": obj(("id", "action", "seq", "state"), id=INT, action=STR, seq=SEQ,
                     state=STR, attempts=INT, result_seq=nullable(SEQ)),
    "ActionJobPage": obj(("jobs", "next"), jobs=array(ref("ActionJob")), next=nullable(INT)),
    "QuickAction": obj(("operator",), operator=STR, params=OBJECT, wait_s=NUM),
    "QuickActionResult": obj(("job",), job=ref("ActionJob"), result=ANY),
    "Plugins": obj(("api_version", "plugins"), api_version=INT, folders=array(OBJECT),
                   plugins=array(obj(("name", "active"), name=STR, path=STR, origin=STR,
                                     version=nullable(STR), active=BOOL, provides=OBJECT,
                                     error=nullable(OBJECT))),
                   transforms=array(OBJECT)),
    "TestClock": obj(("now", "monotonic", "pending_timers"), now=STR, monotonic=NUM,
                     pending_timers=INT),
    "TestClockAdvance": obj(("advance",), advance={"type": "number", "minimum": 0}),
    "StoreCheck": obj(("ok", "checks", "findings"), ok=BOOL, checks=array(STR),
                      findings=array(obj(("check", "detail"), check=STR, detail=STR)),
                      schema_version=INT, events=INT, last_seq=SEQ),
    "Health": obj(("status",), status=STR, last_seq=SEQ),
    "CatalogSummary": obj(
        ("source", "type", "first_seen", "last_seen", "count", "rate_per_s", "silent"),
        source=STR, type=STR, first_seen=TIME, last_seen=TIME, count=INT, arrivals=INT,
        rate_per_s={**NUM, "description": "events per second, decayed over about 5 minutes"},
        usual_gap_s={**nullable(NUM), "description": "moving average of the gaps between"
                                                     " arrivals"},
        silent=BOOL, sampled={**INT, "description": "events the shape was learned from"},
        fields=INT, truncated=BOOL),
    "CatalogEntry": {"allOf": [ref("CatalogSummary"), obj(("shape",), shape={
        "type": "object", "description": "path (`data.labels.severity`, `data.alerts[]`) ->"
                                         " what was seen there",
        "additionalProperties": {
            "type": "object", "required": ["types", "required", "seen"],
            "properties": {"types": array(STR), "required": BOOL, "seen": INT}}})]},
    "CatalogList": obj(("enabled", "entries"), enabled=BOOL,
                       entries=array(ref("CatalogSummary"))),
    "OpenAPI": obj(("openapi", "info", "paths"), openapi=STR, info=OBJECT, paths=OBJECT),
}
