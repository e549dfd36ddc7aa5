"""The architecture, checked: the write path and the store contract are the only ways in,
features reach each other through ports, and the composition root alone knows them all
(import analysis of the source, no broker started)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parent.parent / "broker"
FEATURES = ("todos", "delivery", "actions", "plugin_host", "catalog")


def modules() -> dict[str, Path]:
    found = {}
    for path in BROKER.rglob("*.py"):
        parts = path.relative_to(BROKER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at run time or for type checking."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


MODULES = modules()


def test_nothing_outside_the_store_talks_to_a_database():
    for name, path in MODULES.items():
        if within(name, "broker.store"):
            continue
        drivers = {i for i in imports_of(path)
                   if i.split(".")[0] in ("sqlite3", "aiosqlite", "asyncpg")}
        assert not drivers, f"{name} imports {drivers}: only broker/store/ talks to databases"


def test_only_the_composition_root_builds_backends_and_knows_the_broker():
    for name, path in MODULES.items():
        if within(name, "broker.store") or within(name, "broker.http") \
                or within(name, "broker.cli") or name == "broker.core":
            continue
        found = imports_of(path)
        assert not any(within(i, "broker.core") for i in found), \
            f"{name} imports broker.core: components are handed what they use"
        assert not any(within(i, "broker.store.sqlite") for i in found), \
            f"{name} imports the SQLite backend: features know repository contracts only"


@pytest.mark.parametrize("feature", FEATURES)
def test_a_feature_reaches_another_only_through_ports_and_models(feature: str):
    allowed = {"model", "repository", "kinds"}  # records, contracts, the kinds registry
    for name, path in MODULES.items():
        if not within(name, f"broker.{feature}"):
            continue
        for imported in imports_of(path):
            for other in FEATURES:
                if other == feature or not within(imported, f"broker.{other}"):
                    continue
                rest = imported.removeprefix(f"broker.{other}").strip(".").split(".")
                assert rest and rest[0] in allowed, \
                    f"{name} imports {imported}: use a port in broker.ports"


def test_the_write_path_does_not_depend_on_routing_or_features():
    for name, path in MODULES.items():
        if not within(name, "broker.bus"):
            continue
        for imported in imports_of(path):
            assert not any(within(imported, f"broker.{p}")
                           for p in ("routing", "core", *FEATURES)), \
                f"{name} imports {imported}: routing and features plug into the bus"


def test_contracts_do_not_import_backends_or_the_http_layer():
    contracts = [n for n in MODULES if n.endswith((".repository", ".model"))
                 or n in ("broker.store.base", "broker.store.transaction", "broker.bus.log")]
    assert len(contracts) >= 9
    for name in contracts:
        for imported in imports_of(MODULES[name]):
            assert not within(imported, "broker.store.sqlite"), (name, imported)
            assert not within(imported, "broker.http"), (name, imported)
