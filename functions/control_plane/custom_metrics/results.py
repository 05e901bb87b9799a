"""Build the agreement result JSON from scored pairs.

The synchronous route, local background jobs and the state machine's aggregation step all call
`agreement_result`, so the three return the same JSON for the same export and scores. The payload
and record helpers keep the per-control pair ids in one place for every caller.
"""

from __future__ import annotations

from typing import Any

from custom_metrics.aggregate import aggregate, pair_record
from custom_metrics.tasks import Pair, control_pair_id


def pair_payloads(pairs: list[Pair], *, per_control: bool) -> list[dict[str, Any]]:
    """List the invocation payloads for `pairs`, plus one per control and pair when `per_control` is set."""
    payloads = [pair.payload() for pair in pairs]
    if per_control:
        payloads += [pair.control_payload(control) for pair in pairs for control in pair.controls()]
    return payloads


def pair_records(pairs: list[Pair], results: dict[str, Any], *, per_control: bool) -> list[dict[str, Any]]:
    """Merge each pair with its result (and its per-control results) into the output records, in pair order."""
    return [_record(pair, results, per_control) for pair in pairs]


def agreement_result(
    task_keys: list[Any],
    records: list[dict[str, Any]],
    *,
    function_name: str,
    code_sha256: str,
    pair_mode: str,
    per_label: bool,
    per_control: bool,
    request_id: str,
    warnings: list[str],
    function_version: str | None = None,
) -> dict[str, Any]:
    """Aggregate pair records into the agreement result JSON that the README documents.

    `function_version` is the version that `live` pointed at when the run started, or None before any went live.
    """
    body = aggregate(task_keys, records)
    version = int(function_version) if function_version is not None else None
    return {
        "agreement": body.pop("agreement"),
        "function": {"name": function_name, "code_sha256": code_sha256, "version": version},
        "pair_mode": pair_mode,
        "per_label": per_label,
        "per_control": per_control,
        "request_id": request_id,
        **body,
        "warnings": warnings,
    }


def _record(pair: Pair, results: dict[str, Any], per_control: bool) -> dict[str, Any]:
    controls = None
    if per_control:
        controls = {control: results.get(control_pair_id(pair.id, control)) for control in pair.controls()}
    return pair_record(pair, results.get(pair.id), controls)
