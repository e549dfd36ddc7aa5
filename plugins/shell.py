"""The `shell` action kind: run a configured command with the event JSON on stdin.

    [[actions]]
    name = "rotate-logs"
    kind = "shell"
    command = ["/usr/local/bin/rotate-logs", "--fast"]
    timeout = "30s"         # the process group is killed after it (number: seconds)
    max_output = 65536      # bytes of stdout kept in the result
    env = { REGION = "eu1" }
    env_from = ["AWS_PROFILE"]   # passed through from the broker's environment

The command runs without a shell and nothing from the event is put into its arguments:
the event arrives on stdin, and as OPSBUS_EVENT_ID / _TYPE / _SOURCE / _SUBJECT. Exit
status 0 is success; stdout (capped) is the result body, the end of stderr the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from typing import Any

import orjson

from broker.plugin_host.api import ActionContext, Event, Registry, seconds, whole_number

__version__ = "1.0.0"
PLUGIN_API_VERSION = 1

BASE_ENV = ("PATH", "HOME", "LANG", "TZ")
STDERR_KEEP = 2048


def register(registry: Registry) -> None:
    registry.action("shell", run)


def _max_output(value: Any) -> int:
    """`max_output` as a byte count: an integer, or its ASCII digits (a TOML string)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**31:
        return value
    if isinstance(value, str):
        return whole_number(value, maximum=2**31)
    raise ValueError(f"max_output must be a number of bytes, got {value!r}")


def _command(spec: Mapping[str, Any]) -> list[str]:
    command = spec.get("command")
    if (not isinstance(command, list) or not command
            or not all(isinstance(part, str) for part in command)):
        raise ValueError("command must be a non-empty list of strings, e.g. ['/bin/script', 'arg']")
    return list(command)


def _environment(spec: Mapping[str, Any], event: Event, ctx: ActionContext) -> dict[str, str]:
    # Only what the action asks for: the broker's own secrets stay out of scripts.
    env = {name: value for name in BASE_ENV if (value := ctx.secret(name)) is not None}
    for name in spec.get("env_from", []) or []:
        if (value := ctx.secret(str(name))) is not None:
            env[str(name)] = value
    env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    for attribute in ("id", "type", "source", "subject"):
        if event.get(attribute) is not None:
            env[f"OPSBUS_EVENT_{attribute.upper()}"] = str(event[attribute])
    return env


async def _read_capped(stream: asyncio.StreamReader, limit: int, tail: bool = False) -> bytes:
    """Read to EOF (so the child never blocks on a full pipe), keeping `limit` bytes:
    the first ones, or with `tail` the last ones."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-limit:] if tail else kept + chunk[: max(0, limit - len(kept))]
    return kept


async def run(spec: Mapping[str, Any], event: Event, ctx: ActionContext) -> dict[str, Any]:
    command = _command(spec)
    timeout = seconds(spec.get("timeout", 30))
    max_output = _max_output(spec.get("max_output", 65536))
    request = {"command": command, "timeout": timeout}
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_environment(spec, event, ctx),
            cwd=spec.get("cwd"), start_new_session=True,  # a group we can kill whole
        )
    except OSError as exc:
        return {"ok": False, "status": None, "body": None, "request": request,
                "error": f"cannot run {command[0]}: {exc.strerror or exc}"}
    assert proc.stdin and proc.stdout and proc.stderr

    async def feed() -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(orjson.dumps(event))  # type: ignore[union-attr]
            await proc.stdin.drain()  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]

    work = asyncio.gather(feed(), _read_capped(proc.stdout, max_output),
                          _read_capped(proc.stderr, STDERR_KEEP, tail=True), proc.wait())
    try:
        _, out, err, code = await asyncio.wait_for(work, timeout)
    except TimeoutError:
        return {"ok": False, "status": None, "body": None, "request": request,
                "error": f"{command[0]} did not finish within {timeout:g}s and was killed"}
    finally:
        # Also when the runner cancels us: no command outlives its action.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
    body = out.decode(errors="replace")
    if code == 0:
        return {"ok": True, "status": 0, "body": body, "error": None, "request": request}
    stderr = err.decode(errors="replace").strip()
    return {"ok": False, "status": code, "body": body, "request": request,
            "error": f"{command[0]} exited with status {code}" + (f": {stderr}" if stderr else "")}
