"""The local sandbox: a pool of long-lived worker processes that run metric batches.

Each worker is `python -I` running `custom_metrics_runtime.worker` for one code directory and one memory
limit. A batch for another code directory or memory limit goes to another worker. When all `size` slots
are taken, an idle worker of another metric is stopped to make room. Workers start with:

- an environment built from scratch (PATH, LANG, HOME and TMPDIR set to a per-worker scratch directory,
  and OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1), nothing inherited from this process;
- cwd set to that scratch directory, removed when the worker stops;
- RLIMIT_AS = memory_mb MiB, which caps virtual address space, not resident memory, so it is stricter
  than Lambda's memory setting for libraries that reserve large mappings; RLIMIT_CORE = 0;
- a new session, so that killing the process group also kills any process the metric started;
- on Linux, PR_SET_PDEATHSIG=SIGKILL, so a worker dies when this process dies, even by SIGKILL. The kernel
  sends it when the thread that started the worker exits, so every worker is started from one thread that
  the pool owns until `close()`.

This is isolation against accidents (a runaway loop, a huge allocation, a crash), not a security
boundary: the metric runs as the same user as this process and can read what it can read.

Timeouts: the runtime in the worker stops a pair at the batch deadline by itself. This pool adds a hard
deadline of timeout + GRACE_SECONDS: past it the worker is killed and BatchFailedError("timeout") names
the pair that was running, read from the worker's shared pair index. A worker that dies raises
BatchFailedError("memory") for an out-of-memory exit or a SIGKILL it did not get from this pool (the
kernel's OOM killer). A crash by signal after the runtime had scored the batch also raises "memory",
because encoding a response too large for the memory limit ends that way. Other deaths raise
BatchFailedError("crash"). The next batch starts a fresh worker.
Error messages are one sentence with no worker output; that output goes to the `on_log` and `on_output`
callbacks, which the local backend writes to the function's log files.
"""

from __future__ import annotations

import fcntl
import logging
import math
import mmap
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

import custom_metrics_runtime
from custom_metrics.backends.base import BatchFailedError
from custom_metrics.orchestrator import ERROR_TYPES
from custom_metrics_runtime.protocol import (
    EXIT_MEMORY,
    FRAME_HEADER,
    IDLE_INDEX,
    LOADING_INDEX,
    MAX_FRAME_BYTES,
    PAIR_INDEX,
    READY_FRAME,
    REQUEST_MARKER,
)

logger = logging.getLogger(__name__)

GRACE_SECONDS = 1.0
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0
STDERR_LINE_LIMIT = 500
# Signals by which a process dies when an allocation fails inside C code that does not check for NULL.
_MEMORY_CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT)
# Larger pipe buffers mean fewer wake-ups per frame; Linux allows up to 1 MiB to unprivileged users.
PIPE_BUFFER_BYTES = 1 << 20

# The runtime package's parent directory: the local counterpart of the layer's /opt/python.
_LAYER_DIR = str(Path(custom_metrics_runtime.__file__).resolve().parent.parent)
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from custom_metrics_runtime.worker import main; sys.exit(main(sys.argv[2:]))"
)

LogCallback = Callable[[Path, str], None]
# (code_dir, line, request id of the batch that was running when the line was written, or None)
OutputCallback = Callable[[Path, str, "str | None"], None]


@dataclass(frozen=True)
class _WorkerKey:
    code_dir: Path
    memory_mb: int


class FrameChannelTimeout(Exception):
    """The deadline passed before a frame was fully sent or received."""


class FrameChannelClosed(Exception):
    """The worker closed its end of a pipe (it exited or crashed)."""


class FrameChannel:
    """Length-prefixed frames over a worker's stdin and stdout, with a deadline on every operation.

    Both pipe ends are non-blocking and waited on with poll(), so a hung worker cannot block the caller
    past the deadline.
    """

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        for descriptor in (write_fd, read_fd):
            os.set_blocking(descriptor, False)
            _enlarge_pipe(descriptor)
        self._writable = select.poll()
        self._writable.register(write_fd, select.POLLOUT)
        self._readable = select.poll()
        self._readable.register(read_fd, select.POLLIN)

    def send(self, body: bytes, deadline: float) -> None:
        view = memoryview(FRAME_HEADER.pack(len(body)) + body)
        while view:
            _wait(self._writable, deadline)
            try:
                written = os.write(self._write_fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise FrameChannelClosed from None
            view = view[written:]

    def receive(self, deadline: float) -> bytearray:
        (length,) = FRAME_HEADER.unpack(self._read_exactly(FRAME_HEADER.size, deadline))
        if length > MAX_FRAME_BYTES:
            raise FrameChannelClosed(f"response frame of {length} bytes is over the limit of {MAX_FRAME_BYTES}")
        return self._read_exactly(length, deadline)

    def _read_exactly(self, size: int, deadline: float) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        filled = 0
        while filled < size:
            _wait(self._readable, deadline)
            try:
                count = os.readv(self._read_fd, [view[filled:]])
            except BlockingIOError:
                continue
            if count == 0:
                raise FrameChannelClosed
            filled += count
        return buffer


def _enlarge_pipe(descriptor: int) -> None:
    try:
        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
    except (AttributeError, OSError):
        pass  # not Linux, or over /proc/sys/fs/pipe-max-size: the default size still works


def _wait(poller: select.poll, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FrameChannelTimeout
    if not poller.poll(math.ceil(remaining * 1000)) and time.monotonic() >= deadline:
        raise FrameChannelTimeout


class WorkerOutput:
    """Drain a worker's stderr on a thread and pass each line, with its batch's request id, to the callbacks."""

    def __init__(
        self, stream: IO[bytes], code_dir: Path, on_log: LogCallback | None, on_output: OutputCallback | None
    ) -> None:
        self._code_dir = code_dir
        self._on_log = on_log
        self._on_output = on_output
        self._thread = threading.Thread(target=self._drain, args=(stream,), name="custom-metrics-stderr", daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        request_id: str | None = None
        with stream:
            while raw := stream.readline(STDERR_LINE_LIMIT):
                line = raw.decode("utf-8", "backslashreplace").rstrip("\n")
                if line.startswith(REQUEST_MARKER):
                    request_id = line[len(REQUEST_MARKER) :] or None
                    continue
                try:
                    if self._on_log is not None:
                        self._on_log(self._code_dir, line)
                    if self._on_output is not None:
                        self._on_output(self._code_dir, line, request_id)
                except Exception:
                    # Draining must go on, or the worker blocks on a full stderr pipe.
                    logger.exception("worker output callback failed", extra={"code_dir": str(self._code_dir)})

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _clean_environment(scratch_dir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": scratch_dir,
        "TMPDIR": scratch_dir,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


def _exit_status(returncode: int | None) -> str:
    if returncode is None:
        return "an unknown status"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


class _Worker:
    """One worker process and its pipes; used by one thread at a time."""

    def __init__(
        self,
        key: _WorkerKey,
        control_dir: str,
        spawner: ThreadPoolExecutor,
        on_log: LogCallback | None,
        on_output: OutputCallback | None,
    ) -> None:
        self.key = key
        self.cancelled = False
        self._scratch_dir = tempfile.mkdtemp(prefix="custom-metrics-worker-")
        descriptor, self._index_path = tempfile.mkstemp(dir=control_dir, suffix=".index")
        with os.fdopen(descriptor, "r+b") as index_file:
            index_file.write(PAIR_INDEX.pack(IDLE_INDEX))
            index_file.flush()
            self._index = mmap.mmap(index_file.fileno(), PAIR_INDEX.size)

        # Started on the pool's spawner thread; see the module docstring on PR_SET_PDEATHSIG.
        try:
            self._process = spawner.submit(self._spawn).result()
        except BaseException:
            self._remove_files()
            raise
        assert self._process.stdin is not None and self._process.stdout is not None
        assert self._process.stderr is not None
        self._channel = FrameChannel(self._process.stdin.fileno(), self._process.stdout.fileno())
        self._stderr = WorkerOutput(self._process.stderr, key.code_dir, on_log, on_output)
        self.alive = True

    def _spawn(self) -> subprocess.Popen[bytes]:
        key = self.key
        command = [sys.executable, "-I", "-c", _BOOTSTRAP, _LAYER_DIR, str(key.code_dir), self._index_path]
        try:
            process = subprocess.Popen(
                [*command, str(key.memory_mb), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_clean_environment(self._scratch_dir),
                cwd=self._scratch_dir,
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            self._remove_files()
            raise
        logger.debug("metric worker started", extra={"pid": process.pid, "code_dir": str(key.code_dir)})
        return process

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self, timeout: float) -> None:
        """Wait for the worker's ready frame, or stop it and raise BatchFailedError."""
        try:
            frame = self._channel.receive(time.monotonic() + timeout)
        except FrameChannelTimeout:
            self.stop()
            raise BatchFailedError("timeout", f"the metric worker did not start within {timeout:g} s") from None
        except FrameChannelClosed:
            returncode = self.stop(exit_wait=STOP_TIMEOUT_SECONDS)
            raise BatchFailedError(
                "memory" if returncode == EXIT_MEMORY else "crash",
                f"the metric worker failed to start: it exited with {_exit_status(returncode)} "
                f"(memory limit {self.key.memory_mb} MiB); its output is in the function's logs",
            ) from None
        if bytes(frame) != READY_FRAME:
            self.stop()
            raise BatchFailedError("crash", "the metric worker sent an unexpected first frame")

    def invoke(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one batch; on a timeout or a death, stop the worker and raise BatchFailedError."""
        PAIR_INDEX.pack_into(self._index, 0, IDLE_INDEX)
        request = orjson.dumps({"timeout": timeout, "invocation_id": uuid.uuid4().hex, "payload": payload})
        hard_deadline = time.monotonic() + timeout + GRACE_SECONDS
        try:
            self._channel.send(request, hard_deadline)
            body = self._channel.receive(hard_deadline)
        except FrameChannelTimeout:
            index = self._published_index()
            self.stop()
            failure = BatchFailedError(
                "timeout",
                f"the metric did not return within the timeout of {timeout:g} s (plus {GRACE_SECONDS:g} s grace)"
                f"{_activity(payload, index)}, so its worker process was killed",
                culprit_id=_pair_id(payload, index),
            )
        except FrameChannelClosed:
            index = self._published_index()
            returncode = self.stop(exit_wait=STOP_TIMEOUT_SECONDS)
            if self.cancelled:
                raise BatchFailedError("cancelled", "the worker pool was closed while the batch ran") from None
            failure = self._death_error(returncode, payload, index)
        else:
            response: dict[str, Any] = orjson.loads(body)
            return response
        if index == LOADING_INDEX:
            logger.info(
                "metric worker failed while importing metric.py (request %s): %s",
                payload.get("request_id"),
                failure.reason,
                extra={"pid": self.pid, "code_dir": str(self.key.code_dir)},
            )
            return _import_failure_response(payload, failure)
        # The caller records the failure on a pair and logs it with the function name.
        logger.debug(
            "metric worker failed",
            extra={"pid": self.pid, "reason": failure.reason, "culprit_id": failure.culprit_id, "index": index},
        )
        raise failure

    def _published_index(self) -> int:
        (index,) = PAIR_INDEX.unpack_from(self._index, 0)
        return int(index)

    def _close_pipes(self) -> None:
        # Close through the Popen file objects, which own the descriptors; closing the raw numbers here
        # would let those objects close a reused number later.
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # nothing was buffered; the pipe is gone with the process

    def _death_error(self, returncode: int | None, payload: dict[str, Any], index: int) -> BatchFailedError:
        culprit = _pair_id(payload, index)
        limit = f"limit {self.key.memory_mb} MiB of address space"
        if returncode == EXIT_MEMORY or returncode == -signal.SIGKILL:
            message = f"the metric worker ran out of memory{_activity(payload, index)} ({limit})"
            return BatchFailedError("memory", message, culprit_id=culprit)
        crashed_by_signal = returncode is not None and -returncode in _MEMORY_CRASH_SIGNALS
        if crashed_by_signal and index == IDLE_INDEX:
            # The runtime had scored every pair and the worker died encoding the response, which needs a
            # second copy of the results in memory: a huge per-label breakdown does this.
            message = (
                f"the metric worker crashed with {_exit_status(returncode)} while encoding the batch's results, "
                f"most likely because they did not fit in memory ({limit})"
            )
            return BatchFailedError("memory", message, culprit_id=culprit)
        message = f"the metric worker process exited with {_exit_status(returncode)}{_activity(payload, index)}"
        if crashed_by_signal:
            message += f", which can also mean it ran out of memory ({limit})"
        return BatchFailedError("crash", message, culprit_id=culprit)

    def kill(self) -> None:
        """Kill the worker's process group from another thread; the thread running its batch cleans up."""
        self.cancelled = True
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group has already exited

    def stop(self, *, exit_wait: float = 0.0) -> int | None:
        """Kill the worker's process group, reap it, remove its files; return its exit status.

        `exit_wait` gives a worker whose pipe closed time to exit by itself, so that its own exit status
        is reported rather than the SIGKILL sent here.
        """
        if self.alive:
            self.alive = False
            if exit_wait > 0:
                try:
                    self._process.wait(timeout=exit_wait)
                except subprocess.TimeoutExpired:
                    pass  # still running with its pipe closed: the SIGKILL below ends it
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the whole group has already exited
            try:
                self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("metric worker did not exit after SIGKILL", extra={"pid": self._process.pid})
            self._stderr.join(STOP_TIMEOUT_SECONDS)
            self._close_pipes()
            self._remove_files()
        return self._process.returncode

    def _remove_files(self) -> None:
        if not self._index.closed:
            self._index.close()
        Path(self._index_path).unlink(missing_ok=True)
        shutil.rmtree(self._scratch_dir, ignore_errors=True)


def _pair_id(payload: dict[str, Any], index: int) -> str | None:
    pairs = payload.get("pairs", [])
    if 0 <= index < len(pairs):
        pair_id: str = pairs[index]["id"]
        return pair_id
    return None


def _activity(payload: dict[str, Any], index: int) -> str:
    """Return what the worker was doing at `index`, as a phrase to append to an error message.

    The pair is not named: the message lands on that pair's record, and pair ids are internal.
    """
    if index == LOADING_INDEX:
        return " while importing metric.py"
    return " while scoring this pair" if _pair_id(payload, index) is not None else ""


def _import_failure_response(payload: dict[str, Any], failure: BatchFailedError) -> dict[str, Any]:
    """Return a response that gives every pair the failure, as the runtime does for an import exception.

    Bisecting would not help, because every batch fails the same way while metric.py cannot be imported.
    """
    error = {
        "type": ERROR_TYPES.get(failure.reason, "FunctionError"),
        "message": f"{failure.message}; fix what metric.py does at import time, or raise the limit it exceeds",
        "line": None,
    }
    results = [{"id": pair["id"], "score": None, "per_label": None, "error": error} for pair in payload["pairs"]]
    return {"results": results, "not_run": []}


class WorkerPool:
    """At most `size` worker processes, shared by any number of threads.

    `invoke` blocks while all workers are busy. `on_log(code_dir, line)`, if given, receives every line a
    worker writes to stderr (user prints and the runtime's batch log), cut to 500 characters.
    `on_output(code_dir, line, request_id)` receives the same lines with the request id of the batch
    that was running. Both run on a drain thread, so they must be quick and must bound what they store.
    """

    def __init__(
        self, size: int, *, on_log: LogCallback | None = None, on_output: OutputCallback | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"invalid worker pool size {size}: expected at least 1")
        self.size = size
        self._on_log = on_log
        self._on_output = on_output
        self._condition = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots_taken = 0
        self._closed = False
        self._control_dir = tempfile.mkdtemp(prefix="custom-metrics-pool-")
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custom-metrics-spawn")

    def invoke(self, code_dir: Path, payload: dict[str, Any], timeout: float, memory_mb: int) -> dict[str, Any]:
        """Run one batch of `payload` with the metric in `code_dir`; return the runtime's response.

        Raises BatchFailedError when the batch fails as a whole (timeout, crash, out of memory).
        """
        key = _WorkerKey(Path(code_dir).resolve(), memory_mb)
        worker = self._acquire(key)
        try:
            response = worker.invoke(payload, timeout)
        finally:
            self._release(worker)
        return response

    def _acquire(self, key: _WorkerKey) -> _Worker:
        evicted: _Worker | None = None
        with self._condition:
            while True:
                if self._closed:
                    raise RuntimeError("the worker pool is closed; create a new WorkerPool")
                for position in range(len(self._idle) - 1, -1, -1):
                    if self._idle[position].key == key:
                        worker = self._idle.pop(position)
                        self._busy.add(worker)
                        return worker
                if self._slots_taken < self.size:
                    self._slots_taken += 1
                    break
                if self._idle:
                    evicted = self._idle.pop(0)  # least recently used; its slot passes to the new worker
                    break
                self._condition.wait()
        if evicted is not None:
            evicted.stop()
        return self._start(key)

    def _start(self, key: _WorkerKey) -> _Worker:
        try:
            worker = _Worker(key, self._control_dir, self._spawner, self._on_log, self._on_output)
            worker.wait_ready(STARTUP_TIMEOUT_SECONDS)
        except BaseException:
            with self._condition:
                self._slots_taken -= 1
                self._condition.notify()
            raise
        with self._condition:
            closed = self._closed
            if not closed:
                self._busy.add(worker)
        if closed:
            self._release(worker)
            raise RuntimeError("the worker pool was closed while a worker started; create a new WorkerPool")
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._condition:
            self._busy.discard(worker)
            keep = worker.alive and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._slots_taken -= 1
            self._condition.notify()
        if not keep:
            worker.stop()

    def close(self) -> None:
        """Stop idle workers and kill busy ones now; their invokes raise BatchFailedError("cancelled").

        Later invokes raise RuntimeError. The threads running the killed batches remove those workers' files.
        """
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._slots_taken -= len(idle)
            self._condition.notify_all()
        for worker in busy:
            worker.kill()
        for worker in idle:
            worker.stop()
        self._spawner.shutdown(wait=False)
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
