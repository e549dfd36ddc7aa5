"""TLS for the HTTP API: the server's SSL context from the tls_cert/tls_key settings."""

from __future__ import annotations

import ssl

from broker.errors import InvalidConfig
from broker.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context `serve` listens with, or None for plain HTTP. TLS 1.2 at least, the
    defaults of Python's ssl module otherwise (modern ciphers, no compression)."""
    if not settings.tls_cert or not settings.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except FileNotFoundError as exc:
        raise InvalidConfig(f"TLS: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise InvalidConfig(f"TLS: cannot use certificate {settings.tls_cert} with key"
                            f" {settings.tls_key}: {getattr(exc, 'reason', None) or exc}"
                            ) from None
    return context
