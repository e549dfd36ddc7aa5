"""opsbus broker: durable CloudEvents ingest, routing, todo queues, delivery and the HTTP API."""

__version__ = "0.1.0"
