"""Local worker process: serve batches of one metric over length-prefixed frames on stdin and stdout.

`custom_metrics.sandbox.WorkerPool` starts it as
`python -I -c <bootstrap> <layer_dir> <code_dir> <index_file> <memory_mb> <parent_pid>`, with a clean
environment and a scratch directory as cwd. On Linux the worker sets PR_SET_PDEATHSIG so that the kernel
sends it SIGKILL when its parent dies, and a killed CLI or server leaves no worker behind. A worker serves
one code directory for its whole life, because a metric's import can change interpreter state that a
reload would not undo. Unlike the rest of this package it imports orjson, so it runs only where the
control plane's dependencies are installed, never on Lambda.

Request frame: {"timeout": seconds, "invocation_id": str, "payload": <invocation payload>}.
Response frame: the runtime's response (see `custom_metrics.backends.base`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import io
import mmap
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from .handler import handle_batch
from .protocol import (
    EXIT_MEMORY,
    EXIT_PROTOCOL_ERROR,
    FRAME_HEADER,
    IDLE_INDEX,
    MAX_FRAME_BYTES,
    PAIR_INDEX,
    READY_FRAME,
    REQUEST_MARKER,
)

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
# Exit status of a worker whose parent had already exited when it started.
EXIT_ORPHANED = 71


class LocalContext:
    """The part of Lambda's context object that the runtime reads, for one local invocation."""

    def __init__(self, timeout_seconds: float, aws_request_id: str, memory_limit_in_mb: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.aws_request_id = aws_request_id
        self.memory_limit_in_mb = memory_limit_in_mb
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGKILL when the parent exits; return False if the parent `parent_pid` is already gone.

    PR_SET_PDEATHSIG is Linux-only; elsewhere this does nothing and returns True. The signal fires when the
    thread that started this process exits, which is why the pool starts workers from one long-lived thread.
    """
    library = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or library is None:
        return True
    libc = ctypes.CDLL(library, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        print(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(error)}", file=sys.stderr)
        return True
    # The parent may have exited between fork and prctl; then this process was already re-parented.
    return os.getppid() == parent_pid


def apply_limits(memory_mb: int) -> None:
    """Cap the address space (RLIMIT_AS, which counts all mappings, not only resident memory) and disable cores."""
    address_space = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        address_space = min(address_space, hard)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def detach_protocol_pipes() -> tuple[io.FileIO, io.FileIO]:
    """Move the protocol pipes off fds 0 and 1, so that user code reading stdin or printing cannot touch them.

    Afterwards fd 0 is /dev/null, and fd 1 and sys.stdout write to stderr, which the supervisor drains.
    """
    requests = io.FileIO(os.dup(0), "r")
    responses = io.FileIO(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    stdout = io.FileIO(1, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(stdout, encoding="utf-8", errors="backslashreplace", line_buffering=True)
    return requests, responses


def read_frame(stream: io.FileIO) -> bytearray | None:
    """Return the next frame's body, or None at end of input."""
    header = _read_exactly(stream, FRAME_HEADER.size)
    if header is None:
        return None
    (length,) = FRAME_HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"request frame of {length} bytes is over the limit of {MAX_FRAME_BYTES}")
    body = _read_exactly(stream, length)
    if body is None:
        raise ValueError(f"input ended inside a frame of {length} bytes")
    return body


def _read_exactly(stream: io.FileIO, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        count = stream.readinto(view[filled:])
        if not count:
            return None
        filled += count
    return buffer


def write_frame(stream: io.FileIO, body: bytes) -> None:
    """Write one frame; loops because a raw write to a pipe may be partial."""
    view = memoryview(FRAME_HEADER.pack(len(body)) + body)
    while view:
        written = stream.write(view)
        view = view[written or 0 :]


def _decode(body: bytearray) -> dict[str, Any]:
    # Objects decoded from JSON cannot form reference cycles, so the cyclic collector is paused while they
    # are built. That saved about 10% of the decoding time of a 2000-pair batch on a 2-core machine.
    gc.disable()
    try:
        request: dict[str, Any] = orjson.loads(body)
    finally:
        gc.enable()
    return request


def mark_request(request_id: object) -> None:
    """Write the REQUEST_MARKER line for the next batch, after any output of the previous one."""
    sys.stdout.flush()
    sys.stderr.flush()
    text = str(request_id).replace("\n", " ") if request_id is not None else ""
    os.write(2, f"{REQUEST_MARKER}{text}\n".encode("utf-8", "backslashreplace"))


def serve(code_dir: Path, index_path: str, memory_mb: int, requests: io.FileIO, responses: io.FileIO) -> None:
    """Serve request frames until the supervisor closes the request pipe."""
    with open(index_path, "r+b") as index_file:
        index_map = mmap.mmap(index_file.fileno(), PAIR_INDEX.size)

    def publish(index: int) -> None:
        PAIR_INDEX.pack_into(index_map, 0, index)

    write_frame(responses, READY_FRAME)
    while (body := read_frame(requests)) is not None:
        request = _decode(body)
        context = LocalContext(float(request["timeout"]), str(request.get("invocation_id", "")), memory_mb)
        payload = request["payload"]
        mark_request(payload.get("request_id") if isinstance(payload, dict) else None)
        response = handle_batch(payload, context, code_dir=code_dir, on_pair_start=publish)
        publish(IDLE_INDEX)
        write_frame(responses, orjson.dumps(response))


def main(argv: list[str]) -> int:
    """Run the worker; argv is <code_dir> <index_file> <memory_mb> <parent_pid>."""
    code_dir, index_path, memory_mb, parent_pid = Path(argv[0]), argv[1], int(argv[2]), int(argv[3])
    if not die_with_parent(parent_pid):
        return EXIT_ORPHANED
    apply_limits(memory_mb)
    requests, responses = detach_protocol_pipes()
    # Lambda puts the function's code directory first on sys.path; do the same.
    sys.path.insert(0, str(code_dir))
    try:
        serve(code_dir, index_path, memory_mb, requests, responses)
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except Exception:  # noqa: BLE001 - report any runtime failure through the exit status
        traceback.print_exc()
        return EXIT_PROTOCOL_ERROR
    return 0
