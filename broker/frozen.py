"""Adjustments for the one-file executable (PyInstaller): the environment children get."""

from __future__ import annotations

import os
import sys


def restore_child_environment() -> None:
    """Give programs we start (consume commands, the shell action) the environment the
    user started opsbus with. The one-file bootloader points LD_LIBRARY_PATH at the
    libraries it unpacked, which would make system tools load our OpenSSL or SQLite; the
    dynamic loader read it at start-up already, so changing it here affects only
    children. Another PyInstaller program (opsbus itself, run by a consume command) is
    told to start afresh instead of sharing our unpacked files."""
    if not getattr(sys, "frozen", False):
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is not None:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)
    os.environ["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
