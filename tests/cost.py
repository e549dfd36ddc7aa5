"""The cost of a call as a count that a busy machine cannot change: the Python function
calls (generator resumptions included) it makes. Tests bound growth with it where a
wall-clock bound would flake; how fast things are is the benchmarks' business."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any


def calls(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """(Python calls made by `fn(*args, **kwargs)`, its result or the exception it raised)."""
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    # Garbage left by earlier code would be collected in the middle and its finalizers
    # (sockets, transports) counted: collect it first, and hold collection meanwhile.
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result: Any = fn(*args, **kwargs)
    except Exception as exc:
        result = exc
    finally:
        sys.setprofile(previous)
        if enabled:
            gc.enable()
    return count, result
