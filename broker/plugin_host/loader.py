"""Finding plugin files and importing them from file under a lock-guarded module cache."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from broker.plugin_host.api import PLUGIN_API_VERSION

SHIPPED_DIR = Path(__file__).resolve().parent.parent.parent / "plugins"
"""The `plugins/` package that ships with opsbus."""


@dataclass(frozen=True, slots=True)
class PluginFile:
    """A `.py` file that is a plugin: its name is the file name without `.py`."""

    name: str
    path: Path
    origin: str
    """`shipped` (the plugins/ package) or `folder` (a folder named in opsbus.toml)."""


def discover(folders: list[tuple[Path, str]]) -> dict[str, PluginFile]:
    """Plugin files in `folders` (later folders override earlier ones by name); files
    starting with `_` or `.` are helpers, not plugins."""
    found: dict[str, PluginFile] = {}
    for folder, origin in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith(("_", ".")):
                found[path.stem] = PluginFile(path.stem, path.resolve(), origin)
    return found


def last_line(exc: BaseException) -> str:
    """The last line of a traceback (`SyntaxError: invalid syntax (x.py, line 3)`)."""
    return traceback.format_exception_only(exc)[-1].strip()


class LoadFailed(Exception):
    """Importing a plugin file failed; `message` is the traceback's last line."""

    def __init__(self, message: str, trace: str) -> None:
        super().__init__(message)
        self.message = message
        self.trace = trace


class ModuleCache:
    """The modules currently serving each plugin. Every load executes the file afresh
    under a new module name, so an old version keeps running untouched until the new
    one has imported and registered; the lock keeps `sys.modules` and the cache in step
    when loads happen from more than one thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modules: dict[str, ModuleType] = {}
        self._counter = itertools.count(1)

    def load(self, plugin: PluginFile) -> tuple[ModuleType, str]:
        """Import the file as a new module; (module, version). Raises LoadFailed."""
        try:
            source = plugin.path.read_bytes()
            code = compile(source, str(plugin.path), "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError) as exc:
            raise LoadFailed(last_line(exc), traceback.format_exc()) from None
        with self._lock:
            module_name = f"opsbus_plugins.{plugin.name}_{next(self._counter)}"
        spec = importlib.util.spec_from_file_location(module_name, plugin.path)
        if spec is None:
            raise LoadFailed(f"{plugin.path} cannot be imported", "")
        module = importlib.util.module_from_spec(spec)
        # In sys.modules while it runs: dataclasses and pickling look a module up there.
        sys.modules[module_name] = module
        try:
            exec(code, module.__dict__)  # the bytes hashed below, not a second read
            wanted = getattr(module, "PLUGIN_API_VERSION", PLUGIN_API_VERSION)
            if wanted != PLUGIN_API_VERSION:
                raise RuntimeError(f"plugin needs plugin API {wanted!r};"
                                   f" this broker has {PLUGIN_API_VERSION}")
            if not callable(getattr(module, "register", None)):
                raise RuntimeError("plugin has no register(registry) function")
        except BaseException as exc:
            sys.modules.pop(module_name, None)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise LoadFailed(last_line(exc), traceback.format_exc()) from None
        version = getattr(module, "__version__", None)
        if not isinstance(version, str):
            version = "sha256:" + hashlib.sha256(source).hexdigest()[:12]
        return module, version

    def activate(self, name: str, module: ModuleType) -> None:
        """Make `module` the one serving `name`; the previous one is forgotten."""
        with self._lock:
            old = self._modules.get(name)
            self._modules[name] = module
            if old is not None:
                sys.modules.pop(old.__name__, None)

    def discard(self, module: ModuleType) -> None:
        """Forget a module that loaded but was not activated (its register() failed)."""
        with self._lock:
            sys.modules.pop(module.__name__, None)

    def remove(self, name: str) -> None:
        with self._lock:
            old = self._modules.pop(name, None)
            if old is not None:
                sys.modules.pop(old.__name__, None)
