"""The one exception type a user sees: its message is a single line naming the problem and the fix."""

from __future__ import annotations

import re
from pathlib import Path


class LivesharpError(Exception):
    """Bad input or environment. The CLI prints ``error: <message>`` and exits non-zero, no traceback."""

    exit_code = 1


class ModelError(LivesharpError, ValueError):
    """A model name, checkpoint or graph that cannot be used."""


class OutOfMemory(LivesharpError):
    """Memory ran out (``out_of_memory`` words it): what was being done, what was left, what to do."""


# How the libraries livesharp computes with say that an allocation failed: OpenVINO ("Failed to
# allocate N bytes of memory", or "can't alloc" when compiling), ONNX Runtime ("Failed to
# allocate memory for requested buffer"), torch on the CPU ("DefaultCPUAllocator: can't allocate
# memory", "not enough memory" on Windows), OpenCV ("Insufficient memory"), C++'s std::bad_alloc,
# and ENOMEM's text. Their other errors (a graph that does not load, a shape it refuses) are not
# this and stay as they are.
ALLOCATION_FAILED = re.compile(r"failed to allocate|can't alloc|cannot allocate memory|not enough memory|"
                               r"insufficient memory|bad_alloc|bad allocation", re.IGNORECASE)
# A GPU's memory, not the system's: torch says "CUDA out of memory. Tried to allocate ..." (or
# "CUDA error: out of memory" from a library it calls); the fix is another one.
GPU_MEMORY = re.compile(r"\b(CUDA|HIP)\b[^\n]*out of memory", re.IGNORECASE)
# A thread that could not be started (EAGAIN): under an address-space limit, its stack is an
# allocation like any other, and OpenVINO starts threads as it compiles. Memory only there.
THREAD_FAILED = re.compile(r"resource temporarily unavailable|can't start new thread", re.IGNORECASE)


def allocation_failed(e: BaseException) -> bool:
    """Whether ``e`` says memory ran out: a MemoryError, an ``OutOfMemory``, or another
    library's error whose message reports a failed allocation (or a thread that could not
    start, where an address-space limit is what runs out first).

    >>> allocation_failed(RuntimeError("Check 'ptr' failed at cpu_memory.cpp:257:\\nFailed to allocate 111366176 bytes of memory"))
    True
    >>> allocation_failed(RuntimeError("Exception from src/inference/src/cpp/core.cpp:117: input shape mismatch"))
    False
    """
    text = str(e)
    if isinstance(e, (MemoryError, OutOfMemory)) or ALLOCATION_FAILED.search(text) or GPU_MEMORY.search(text):
        return True
    return bool(THREAD_FAILED.search(text)) and _memory_left()[1] is not None


def _proc_bytes(path: str, field: str) -> int | None:
    """A ``field: N kB`` line of a /proc file, in bytes; None where there is none (not Linux)."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path(path).read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found[1]) * 1024 if found else None


def _memory_left() -> tuple[int | None, int | None]:
    """Bytes the system has available, or the address-space limit (``ulimit -v``) as the
    second value where that limit, not the RAM, runs out first (then it is what to name).
    None where the system does not say."""
    free = _proc_bytes("/proc/meminfo", "MemAvailable")
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except ImportError:  # Windows: no such limit
        return free, None
    if limit == resource.RLIM_INFINITY:
        return free, None
    size = _proc_bytes("/proc/self/status", "VmSize")
    if free is None or size is None or limit - size < free:
        return None, limit
    return free, None


def gpu_out_of_memory(e: BaseException, what: str) -> OutOfMemory | None:
    """The one line for a GPU whose memory ran out while doing ``what``; None for other errors.

    >>> str(gpu_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "compute 3840x2160 frames"))[:49]
    'not enough GPU memory to compute 3840x2160 frames'
    """
    if not GPU_MEMORY.search(str(e)):
        return None
    # --batch is file's alone (cam and image compute one frame at a time)
    return OutOfMemory(f"not enough GPU memory to {what}: close other programs that use the GPU, give it smaller frames "
                       "(with file, fewer at a time: --batch 1), or run on the CPU (--device cpu)")


def out_of_memory(what: str, smaller: str) -> OutOfMemory:
    """The one line for memory that ran out while doing ``what`` ("sharpen this 48 MP picture"):
    the memory there was, and the fixes: more of it, or ``smaller`` ("scale it down first")."""
    free, limit = _memory_left()
    if limit is not None:
        return OutOfMemory(f"not enough memory to {what} (this process may take {limit / 1e9:.1f} GB of address space, "
                           f"ulimit -v): raise that limit, or {smaller}")
    return OutOfMemory(f"not enough memory to {what}{'' if free is None else f' ({free / 1e9:.1f} GB free)'}: close other programs, or {smaller}")
