"""The whole-system invariant checker: a seeded workload against a real broker, then checks."""
