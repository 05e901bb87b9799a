"""Least privilege of the control plane, read from template.yaml (and the `sam build` output when present).

The SAM transform copies a function's `Policies` statements into its role unchanged and adds only the
managed policies named here (basic logs and X-Ray), so checking the statements checks the role.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = [REPO_ROOT / "template.yaml", REPO_ROOT / ".aws-sam" / "build" / "template.yaml"]

METRIC_FUNCTIONS_ARN = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:custom-metric-*"
# Lambda actions allowed outside function:custom-metric-*, with the only resource each may have.
LAMBDA_EXCEPTIONS: dict[str, Any] = {
    "lambda:ListFunctions": "*",
    "lambda:GetLayerVersion": {"Ref": "MetricRuntimeLayer"},
}
EXECUTION_ROLE = {
    "Fn::If": [
        "CreateExecutionRole",
        {"Fn::GetAtt": ["MetricExecutionRole", "Arn"]},
        {"Ref": "ExistingExecutionRoleArn"},
    ]
}


def _plain(value: Any) -> Any:
    """Turn cfn-lint's node classes into plain dicts, lists and strings for comparison."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, str) else value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _load(path: Path) -> dict[str, Any]:
    template: dict[str, Any] = _plain(cfn_yaml.load(str(path)))
    return template


def policy_violations(template: dict[str, Any]) -> list[str]:
    """List every grant of the control-plane function wider than its design allows."""
    properties = template["Resources"]["ControlPlaneFunction"]["Properties"]
    violations: list[str] = []
    for policy in properties.get("Policies", []):
        if not isinstance(policy, dict) or "Statement" not in policy:
            violations.append(f"policy {policy!r} is a managed policy or policy template, not an inline statement list")
            continue
        for statement in _as_list(policy["Statement"]):
            violations.extend(_statement_violations(statement))
    if properties.get("Role"):
        violations.append("the function names its own Role, which this check cannot read")
    return violations


def _statement_violations(statement: dict[str, Any]) -> list[str]:
    if statement.get("Effect") != "Allow":
        return []
    if "NotAction" in statement or "NotResource" in statement:
        return [f"statement {statement.get('Sid')!r} uses NotAction or NotResource"]
    violations = []
    resources = _as_list(statement.get("Resource"))
    for action in _as_list(statement.get("Action")):
        service = action.split(":")[0].lower()
        if action == "*" or (service == "lambda" and "*" in action.split(":", 1)[1]):
            violations.append(f"{action} is a wildcard action")
        elif service == "lambda":
            allowed = LAMBDA_EXCEPTIONS.get(action, {"Fn::Sub": METRIC_FUNCTIONS_ARN})
            violations.extend(f"{action} on {resource!r}" for resource in resources if resource != allowed)
        elif service == "iam":
            allowed_iam = EXECUTION_ROLE if action == "iam:PassRole" else None
            violations.extend(f"{action} on {resource!r}" for resource in resources if resource != allowed_iam)
    return violations


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_template_control_plane_policy_least_privilege(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO_ROOT)} is made by `make template`")

    assert policy_violations(_load(path)) == []


def test_template_policy_check_catches_widened_grants() -> None:
    template = _load(TEMPLATES[0])
    statements = template["Resources"]["ControlPlaneFunction"]["Properties"]["Policies"][0]["Statement"]
    widened = copy.deepcopy(template)
    widened_statements = widened["Resources"]["ControlPlaneFunction"]["Properties"]["Policies"][0]["Statement"]
    widened_statements.append({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"})
    widened_statements.append({"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": "*"})
    widened_statements.append({"Effect": "Allow", "Action": "lambda:*", "Resource": {"Fn::Sub": METRIC_FUNCTIONS_ARN}})

    violations = policy_violations(widened)

    assert len(statements) + 3 == len(widened_statements)
    assert "lambda:InvokeFunction on '*'" in violations
    assert "iam:PassRole on '*'" in violations
    assert "lambda:* is a wildcard action" in violations


def test_template_execution_role_writes_only_metric_logs() -> None:
    role = _load(TEMPLATES[0])["Resources"]["MetricExecutionRole"]["Properties"]
    statements = [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]
    actions = {action for statement in statements for action in _as_list(statement["Action"])}
    resources = [resource["Fn::Sub"] for statement in statements for resource in _as_list(statement["Resource"])]

    assert actions == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert all(":log-group:/aws/lambda/custom-metric-*" in resource for resource in resources)
    assert "ManagedPolicyArns" not in role


def test_template_sets_every_required_setting() -> None:
    environment = _load(TEMPLATES[0])["Resources"]["ControlPlaneFunction"]["Properties"]["Environment"]["Variables"]

    for variable in (
        "LS_LAMBDA_ROLE_CUSTOM_METRICS",
        "LS_LAMBDA_REGION_CUSTOM_METRICS",
        "CUSTOM_METRICS_RUNTIME_LAYER_ARN",
    ):
        assert variable in environment, variable


def test_template_has_one_event_file_per_route() -> None:
    events = _load(TEMPLATES[0])["Resources"]["ControlPlaneFunction"]["Properties"]["Events"]
    routes = {(event["Properties"]["Method"], event["Properties"]["Path"]) for event in events.values()}
    event_files = sorted((REPO_ROOT / "events").glob("*.json"))
    covered = {
        (body["httpMethod"], body["resource"]) for body in (json.loads(path.read_text("utf-8")) for path in event_files)
    }

    assert routes == covered
