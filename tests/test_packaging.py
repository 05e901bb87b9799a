from __future__ import annotations

import base64
import hashlib
import io
import zipfile

from custom_metrics.packaging import build_package, code_sha256, read_source

SOURCE = "def agreement(a, b, per_label=False):\n    return 1.0\n"


def test_build_package_is_byte_identical_for_same_source() -> None:
    assert build_package(SOURCE) == build_package(SOURCE)


def test_build_package_changes_with_source() -> None:
    assert code_sha256(build_package(SOURCE)) != code_sha256(build_package(SOURCE + "\n"))


def test_build_package_holds_only_metric_py() -> None:
    with zipfile.ZipFile(io.BytesIO(build_package(SOURCE))) as archive:
        assert archive.namelist() == ["metric.py"]


def test_build_package_fixes_timestamp_and_mode() -> None:
    with zipfile.ZipFile(io.BytesIO(build_package(SOURCE))) as archive:
        entry = archive.getinfo("metric.py")
    assert entry.date_time == (1980, 1, 1, 0, 0, 0)
    assert entry.external_attr >> 16 == 0o100644


def test_code_sha256_is_lambda_form() -> None:
    package = build_package(SOURCE)
    assert code_sha256(package) == base64.b64encode(hashlib.sha256(package).digest()).decode()


def test_read_source_round_trips_unicode() -> None:
    source = "# métrique ✓\n" + SOURCE
    assert read_source(build_package(source)) == source
