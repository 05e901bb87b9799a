from __future__ import annotations

import pytest

from custom_metrics.errors import MetricSourceError, PayloadTooLargeError
from custom_metrics.source_check import MAX_SOURCE_BYTES, check_source, decode_source, require_valid


def test_check_accepts_label_studio_signature() -> None:
    report = check_source("def agreement(annotation_1, annotation_2, per_label=False) -> float:\n    return 1\n")
    assert report.valid
    assert report.per_label == "positional"


def test_check_accepts_other_parameter_names() -> None:
    assert check_source("def agreement(x, y, by_label=False):\n    return 1\n").per_label == "positional"


def test_check_accepts_per_label_through_kwargs() -> None:
    report = check_source("def agreement(a, b, **kwargs):\n    return 1\n")
    assert report.valid
    assert report.per_label == "keyword"


def test_check_accepts_keyword_only_per_label() -> None:
    assert check_source("def agreement(a, b, *, per_label=False):\n    return 1\n").per_label == "keyword"


def test_check_rejects_missing_per_label() -> None:
    report = check_source("def agreement(a, b):\n    return 1\n")
    assert not report.valid
    assert "does not accept per_label" in report.errors[0]


def test_check_rejects_one_parameter() -> None:
    assert not check_source("def agreement(a, **kw):\n    return 1\n").valid


def test_check_rejects_required_fourth_parameter() -> None:
    report = check_source("def agreement(a, b, per_label, extra):\n    return 1\n")
    assert any("requires 4 positional" in error for error in report.errors)


def test_check_syntax_error_names_line_and_column() -> None:
    report = check_source("x = 1\ndef agreement(a, b, per_label=False)\n    return 1\n")
    assert report.errors[0].startswith("syntax error at line 2, column")


def test_check_rejects_missing_agreement() -> None:
    report = check_source("def score(a, b):\n    return 1\n")
    assert "no module-level function named `agreement`" in report.errors[0]


def test_check_ignores_nested_agreement() -> None:
    assert not check_source("class M:\n    def agreement(self, a, b, per_label=False):\n        return 1\n").valid


def test_check_rejects_async_agreement() -> None:
    assert "async def" in check_source("async def agreement(a, b, per_label=False):\n    return 1\n").errors[0]


def test_check_warns_on_assigned_agreement() -> None:
    report = check_source("def f(a, b, per_label=False):\n    return 1\nagreement = f\n")
    assert report.valid
    assert "cannot be checked" in report.warnings[0]


def test_check_warns_on_third_party_import() -> None:
    report = check_source("import numpy as np\ndef agreement(a, b, per_label=False):\n    return 1\n")
    assert "numpy" in report.warnings[0]


def test_check_rejects_empty_source() -> None:
    assert not check_source("  \n").valid


def test_check_rejects_null_byte() -> None:
    assert not check_source("def agreement(a, b, per_label=False):\n    return 1\x00\n").valid


def test_check_rejects_oversize_source() -> None:
    with pytest.raises(PayloadTooLargeError, match="over the limit of 262144 bytes"):
        check_source("#" * (MAX_SOURCE_BYTES + 1))


def test_decode_source_rejects_non_utf8() -> None:
    with pytest.raises(MetricSourceError, match="byte 0xff at offset 3"):
        decode_source(b"abc\xffdef", origin="metric.py")


def test_decode_source_accepts_bom() -> None:
    assert decode_source("\ufeffx = 1".encode(), origin="metric.py") == "x = 1"


def test_require_valid_raises_with_every_error() -> None:
    with pytest.raises(MetricSourceError) as caught:
        require_valid("def agreement(a):\n    return 1\n")
    assert len(caught.value.details["check"]["errors"]) == 2


def test_check_null_byte_message_has_no_none() -> None:
    report = check_source("def agreement(a, b, per_label=False):\n    return 1\x00\n")
    assert "None" not in report.errors[0]


def test_check_rejects_relative_import() -> None:
    report = check_source("from . import helpers\ndef agreement(a, b, per_label=False):\n    return 1\n")
    assert "relative import at line 1" in report.errors[0]


def test_check_rejects_agreement_bound_to_constant() -> None:
    report = check_source("agreement = 5\n")
    assert "is bound to a constant, not a function" in report.errors[0]
