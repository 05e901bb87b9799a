"""The deterministic zip package that both backends deploy.

The package contains one entry, `metric.py`, with the user's source verbatim. Every byte of the zip
depends only on that source: fixed timestamps, fixed permissions, fixed compression level. So its
SHA-256 is stable, and "the same code" means "the same CodeSha256" on Lambda and locally.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile

METRIC_MODULE_FILE = "metric.py"
# The earliest date a zip entry can carry; any fixed value works, this one is conventional.
_FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# -rw-r--r-- regular file, in the high 16 bits as zip stores Unix modes.
_FILE_MODE = 0o100644 << 16


def build_package(source: str) -> bytes:
    """Zip `source` as metric.py, byte for byte the same for the same source."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entry = zipfile.ZipInfo(METRIC_MODULE_FILE, date_time=_FIXED_DATE_TIME)
        entry.compress_type = zipfile.ZIP_DEFLATED
        entry.external_attr = _FILE_MODE
        entry.create_system = 3  # Unix, so the mode bits are read on extraction.
        archive.writestr(entry, source.encode("utf-8"), compresslevel=9)
    return buffer.getvalue()


def code_sha256(package: bytes) -> str:
    """Base64 of the package's SHA-256 digest: the form of Lambda's `CodeSha256`."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode("ascii")


def read_source(package: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return archive.read(METRIC_MODULE_FILE).decode("utf-8")
