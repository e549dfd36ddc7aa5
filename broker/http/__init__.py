"""The HTTP API: an app factory and thin handlers, one module per area."""
