"""A program on a pseudo-terminal, as a person at a terminal runs it: keys in, screen
bytes out (the console needs a real terminal to start)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """`Terminal(cmd)`: runs `cmd` on a pty of `size` (columns, rows)."""

    def __init__(self, cmd: list[str], *, env: dict[str, str], cwd: Path,
                 size: tuple[int, int] = (120, 40)) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.master = master
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=cwd, start_new_session=True)
        os.close(slave)
        self.output = b""

    def read(self, timeout: float = 0.1) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:  # the program closed the terminal
                pass

    @property
    def text(self) -> str:
        """What was written, without escape sequences."""
        return ANSI.sub(b"", self.output).decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared; last output:\n"
                                     f"{self.text[-2000:]}")
            if self.proc.poll() is not None:
                self.read(0)
                if needle in self.text:
                    return
                raise AssertionError(f"exited with {self.proc.returncode} before "
                                     f"{needle!r}:\n{self.text[-2000:]}")
            self.read()

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; last output:\n{self.text[-2000:]}")
            self.read()
        self.read(0)
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found
