"""Whole-file writes that readers never see half done, for every file the local state keeps."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, durable: bool = True, private: bool = False) -> None:
    """Write `data` to a temporary file beside `path` and rename it over `path`.

    `durable` syncs the data to disk before the rename, so a crash leaves the old or the new file,
    never an empty one. `private` keeps mode 0600, which mkstemp creates the file with, so a secret
    is never readable by others, even briefly; otherwise the file gets 0644.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        if not private:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
