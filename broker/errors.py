"""The one error hierarchy of opsbus, mapped to HTTP problems and CLI exit codes."""

from __future__ import annotations

from typing import Any


class OpsbusError(Exception):
    """Base of every error opsbus reports to a user.

    ``status`` is the HTTP status the API answers with, ``title`` the short RFC 9457
    title, ``extra`` further members of the problem document.
    """

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        doc: dict[str, Any] = {
            "type": f"https://opsbus.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        doc.update({k: v for k, v in self.extra.items() if v is not None})
        return doc


class BadRequest(OpsbusError):
    """The request is malformed (bad JSON, bad parameter)."""

    status = 400
    title = "Bad request"
    slug = "bad-request"


class InvalidEvent(BadRequest):
    """An event violates the CloudEvents 1.0 spec; names the attribute (and batch index)."""

    title = "Invalid CloudEvent"
    slug = "invalid-event"

    def __init__(self, detail: str, *, attribute: str | None = None, index: int | None = None):
        if index is not None:
            detail = f"batch entry {index}: {detail}"
        super().__init__(detail, attribute=attribute, index=index)
        self.attribute = attribute
        self.index = index

    def at_index(self, index: int) -> InvalidEvent:
        """The same error, located at a batch entry."""
        return InvalidEvent(self.detail, attribute=self.attribute, index=index)


class InvalidFilter(BadRequest):
    """A filter or CESQL expression does not parse or is not a known dialect."""

    title = "Invalid filter"
    slug = "invalid-filter"


class InvalidConfig(BadRequest):
    """A configuration object (route, queue, subscription, action, settings) is invalid."""

    title = "Invalid configuration"
    slug = "invalid-config"


class TooLarge(OpsbusError):
    """An event or request is over the configured size limits."""

    status = 413
    title = "Content too large"
    slug = "too-large"


class UnsupportedMediaType(OpsbusError):
    """The request's Content-Type is not one the endpoint accepts."""

    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class Unauthorized(OpsbusError):
    """No or a wrong credential."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(OpsbusError):
    """The credential does not allow this."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(OpsbusError):
    """The addressed object does not exist."""

    status = 404
    title = "Not found"
    slug = "not-found"


class Gone(OpsbusError):
    """The addressed object existed and was removed on purpose (retention)."""

    status = 410
    title = "Gone"
    slug = "gone"


class Conflict(OpsbusError):
    """The request conflicts with the object's current state (illegal transition, lost race)."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class TooManyRequests(OpsbusError):
    """The caller holds as many of a bounded resource (streams) as it may; `retry_after`
    seconds is when to try again (the `Retry-After` header)."""

    status = 429
    title = "Too many requests"
    slug = "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class Unavailable(OpsbusError):
    """The broker cannot take the request now (starting, stopping, the store cannot
    commit); `retry_after` seconds is when to try again (the `Retry-After` header)."""

    status = 503
    title = "Service unavailable"
    slug = "unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class UpstreamError(OpsbusError):
    """An upstream (proxy target, action endpoint) could not be reached."""

    status = 502
    title = "Bad gateway"
    slug = "bad-gateway"


class IncompatibleStore(OpsbusError):
    """A database or backup this opsbus cannot use: not an opsbus store, or written by a
    newer release (a schema version beyond the migrations it knows)."""

    status = 409
    title = "Incompatible store"
    slug = "incompatible-store"


class InsufficientStorage(OpsbusError):
    """The operation needs more disk space than the broker's data directory has free."""

    status = 507
    title = "Insufficient storage"
    slug = "insufficient-storage"
