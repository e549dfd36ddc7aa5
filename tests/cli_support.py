"""Run the `opsbus` command line in a subprocess against a broker."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.broker_process import ROOT


async def run_cli(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `opsbus ARGS...` on a wide terminal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    env.pop("OPSBUS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()
