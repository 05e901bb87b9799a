"""Local worker process: serve batches of one metric over length-prefixed frames on stdin and stdout.

`custom_metrics.sandbox.WorkerPool` starts it as
`python -I -c <bootstrap> <layer_dir> <code_dir> <index_file> <memory_mb>`, with a clean environment and a
scratch directory as cwd. A worker serves one code directory for its whole life, because a metric's
import can change interpreter state that a reload would not undo. Unlike the rest of this package it
imports orjson, so it runs only where the control plane's dependencies are installed, never on Lambda.

Request frame: {"timeout": seconds, "invocation_id": str, "payload": <invocation payload>}.
Response frame: the runtime's response (see `custom_metrics.backends.base`).
"""

from __future__ import annotations

import gc
import io
import mmap
import os
import resource
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
)


class LocalContext:
    """The part of Lambda's context object that the runtime reads, for one local invocation."""

    def __init__(self, timeout_seconds: float, aws_request_id: str) -> None:
        self.timeout_seconds = timeout_seconds
        self.aws_request_id = aws_request_id
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


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


def serve(code_dir: Path, index_path: str, requests: io.FileIO, responses: io.FileIO) -> None:
    """Serve request frames until the supervisor closes the request pipe."""
    with open(index_path, "r+b") as index_file:
        index_map = mmap.mmap(index_file.fileno(), PAIR_INDEX.size)

    def publish(index: int) -> None:
        PAIR_INDEX.pack_into(index_map, 0, index)

    write_frame(responses, READY_FRAME)
    while (body := read_frame(requests)) is not None:
        request = _decode(body)
        context = LocalContext(float(request["timeout"]), str(request.get("invocation_id", "")))
        response = handle_batch(request["payload"], context, code_dir=code_dir, on_pair_start=publish)
        publish(IDLE_INDEX)
        write_frame(responses, orjson.dumps(response))


def main(argv: list[str]) -> int:
    """Run the worker; argv is <code_dir> <index_file> <memory_mb>."""
    code_dir, index_path, memory_mb = Path(argv[0]), argv[1], int(argv[2])
    apply_limits(memory_mb)
    requests, responses = detach_protocol_pipes()
    # Lambda puts the function's code directory first on sys.path; do the same.
    sys.path.insert(0, str(code_dir))
    try:
        serve(code_dir, index_path, requests, responses)
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except Exception:  # noqa: BLE001 - report any runtime failure through the exit status
        traceback.print_exc()
        return EXIT_PROTOCOL_ERROR
    return 0
