"""The check every metric source passes before it is packaged: text, size, syntax, `agreement`.

The check is static: it parses the source and never runs it. Running the metric on sample pairs
(the trial run) happens in the sandbox, never in this process.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from typing import Any

from custom_metrics.errors import MetricSourceError, PayloadTooLargeError

MAX_SOURCE_BYTES = 256 * 1024
ENTRY_POINT = "agreement"

PER_LABEL_POSITIONAL = "positional"
PER_LABEL_KEYWORD = "keyword"


@dataclass
class CheckReport:
    """The outcome of the static check: errors make the source undeployable, warnings do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    per_label: str | None = None

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": self.errors,
            "warnings": self.warnings,
            "entry_point": {"name": ENTRY_POINT, "parameters": self.parameters, "per_label": self.per_label},
        }


def decode_source(data: bytes, *, origin: str) -> str:
    """Decode metric source bytes as UTF-8 (a BOM is allowed), enforcing the size limit."""
    if len(data) > MAX_SOURCE_BYTES:
        raise PayloadTooLargeError(
            f"{origin} is {len(data)} bytes, over the limit of {MAX_SOURCE_BYTES} bytes (256 KiB); "
            "move data out of the source or shorten it"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetricSourceError(
            f"{origin} is not UTF-8 text: byte {data[exc.start]:#04x} at offset {exc.start} is invalid; "
            "save the file as UTF-8"
        ) from exc


def encoded_size(source: str) -> int:
    try:
        return len(source.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise MetricSourceError(
            f"metric source contains a character that is not valid in UTF-8 at offset {exc.start}; "
            "remove it and send the source as UTF-8 text"
        ) from exc


def check_source(source: str) -> CheckReport:
    """Check that `source` parses and defines a module-level `agreement` with a usable signature."""
    report = CheckReport()
    size = encoded_size(source)
    if size > MAX_SOURCE_BYTES:
        raise PayloadTooLargeError(
            f"metric source is {size} bytes, over the limit of {MAX_SOURCE_BYTES} bytes (256 KiB); "
            "move data out of the source or shorten it"
        )
    if not source.strip():
        report.errors.append(
            f"metric source is empty; define `def {ENTRY_POINT}(annotation_1, annotation_2, per_label=False)`"
        )
        return report

    try:
        tree = ast.parse(source, filename="metric.py")
    except SyntaxError as exc:
        if exc.lineno is None:  # Python 3.11 reports a null byte without a position.
            report.errors.append(f"syntax error: {exc.msg}; remove it from the source")
        else:
            report.errors.append(f"syntax error at line {exc.lineno}, column {exc.offset}: {exc.msg}")
        return report
    except ValueError as exc:  # null bytes in the source, on Python versions that raise ValueError
        report.errors.append(f"metric source cannot be parsed: {exc}")
        return report

    _check_entry_point(tree, report)
    _warn_about_imports(tree, report)
    return report


def require_valid(source: str) -> CheckReport:
    """Run the check and raise MetricSourceError listing every error when it fails."""
    report = check_source(source)
    if not report.valid:
        raise MetricSourceError(f"metric check failed: {'; '.join(report.errors)}", details={"check": report.to_dict()})
    return report


def _check_entry_point(tree: ast.Module, report: CheckReport) -> None:
    definitions = [node for node in tree.body if _defines_entry_point(node)]
    if not definitions:
        report.errors.append(
            f"no module-level function named `{ENTRY_POINT}`; define "
            f"`def {ENTRY_POINT}(annotation_1, annotation_2, per_label=False)` at the top level of the file"
        )
        return
    last = definitions[-1]  # Python binds the name to the last definition.
    if isinstance(last, ast.AsyncFunctionDef):
        report.errors.append(f"`{ENTRY_POINT}` at line {last.lineno} is `async def`; make it a plain `def`")
        return
    value = last.value if isinstance(last, ast.Assign | ast.AnnAssign) else None
    if isinstance(value, ast.Constant | ast.List | ast.Dict | ast.Tuple | ast.Set):
        report.errors.append(
            f"`{ENTRY_POINT}` at line {last.lineno} is bound to a {type(value).__name__.lower()}, not a function; "
            f"define `def {ENTRY_POINT}(annotation_1, annotation_2, per_label=False)`"
        )
        return
    if not isinstance(last, ast.FunctionDef):
        report.warnings.append(
            f"`{ENTRY_POINT}` is bound at line {last.lineno} by an assignment or import, so its signature "
            "cannot be checked before it runs"
        )
        return
    _check_signature(last, report)


def _defines_entry_point(node: ast.stmt) -> bool:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return node.name == ENTRY_POINT
    if isinstance(node, ast.Assign):
        return any(isinstance(target, ast.Name) and target.id == ENTRY_POINT for target in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == ENTRY_POINT and node.value is not None
    if isinstance(node, ast.ImportFrom | ast.Import):
        return any((alias.asname or alias.name) == ENTRY_POINT for alias in node.names)
    return False


def _check_signature(definition: ast.FunctionDef, report: CheckReport) -> None:
    arguments = definition.args
    positional = [*arguments.posonlyargs, *arguments.args]
    report.parameters = [argument.arg for argument in positional]
    where = f"`{ENTRY_POINT}` at line {definition.lineno}"

    if len(positional) < 2 and arguments.vararg is None:
        report.errors.append(f"{where} takes {len(positional)} positional parameter(s); it must accept two annotations")
    required_positional = len(positional) - len(arguments.defaults)
    if required_positional > 3:
        report.errors.append(
            f"{where} requires {required_positional} positional arguments; only annotation_1, annotation_2 "
            "and per_label are passed, so give the others default values"
        )
    keyword_only = [argument.arg for argument in arguments.kwonlyargs]
    required_keyword_only = [
        name for name, default in zip(keyword_only, arguments.kw_defaults, strict=True) if default is None
    ]
    for name in required_keyword_only:
        if name != "per_label":
            report.errors.append(
                f"{where} requires keyword-only argument {name!r}, which is never passed; give it a default"
            )

    if len(positional) >= 3:
        report.per_label = PER_LABEL_POSITIONAL
    elif "per_label" in keyword_only or arguments.kwarg is not None:
        report.per_label = PER_LABEL_KEYWORD
    elif arguments.vararg is not None:
        report.per_label = PER_LABEL_POSITIONAL
    else:
        report.errors.append(
            f"{where} does not accept per_label; add a third parameter `per_label=False` (or **kwargs)"
        )


def _warn_about_imports(tree: ast.Module, report: CheckReport) -> None:
    third_party: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            report.errors.append(
                f"relative import at line {node.lineno}: metric.py is deployed as a single module, not a "
                "package; import absolute names or put the code in the file"
            )
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in _LAYER_MODULES:
                third_party.add(top)
    if third_party:
        listed = ", ".join(sorted(third_party))
        report.warnings.append(
            f"imports {listed}, which the AWS Lambda Python runtime does not provide; on Lambda, add a layer "
            "with these packages (the local backend uses the packages of the environment it runs in)"
        )


# Modules the metric runtime layer ships besides the standard library.
_LAYER_MODULES = frozenset({"rapidfuzz", "boto3", "botocore"})
