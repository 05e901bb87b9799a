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
JOB_BUCKET_ARN = {"Fn::GetAtt": ["JobBucket", "Arn"]}
JOB_OBJECTS = {"Fn::Sub": "${JobBucket.Arn}/jobs/*"}
LABEL_STUDIO_OBJECTS = {"Fn::Sub": "${JobBucket.Arn}/label-studio/*"}
LABEL_STUDIO_PARAMETERS = {
    "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/custom-metrics/"
    "${AWS::StackName}/label-studio/*"
}
# S3 and SSM actions each function may have, with the only resources each may name.
STORAGE_GRANTS: dict[str, dict[str, list[Any]]] = {
    "ControlPlaneFunction": {
        "s3:GetObject": [JOB_OBJECTS, LABEL_STUDIO_OBJECTS],
        "s3:PutObject": [JOB_OBJECTS, LABEL_STUDIO_OBJECTS],
        "s3:ListBucket": [JOB_BUCKET_ARN],
        "ssm:GetParameter": [LABEL_STUDIO_PARAMETERS],
    },
    "ReconcileFunction": {
        "s3:GetObject": [LABEL_STUDIO_OBJECTS],
        "s3:PutObject": [LABEL_STUDIO_OBJECTS],
        "s3:ListBucket": [JOB_BUCKET_ARN],
        "ssm:GetParameter": [LABEL_STUDIO_PARAMETERS],
    },
}
# The reconcile function reads and invokes metric functions and changes none of them.
RECONCILE_LAMBDA_ACTIONS = frozenset({"lambda:GetFunction", "lambda:InvokeFunction"})
# Routes that Label Studio and label-studio-sdk call unsigned; the code checks their secrets.
UNSIGNED_ROUTES = {
    ("POST", "/webhooks/label-studio"),
    ("GET", "/api/projects/{project}/custom-function"),
    ("POST", "/api/projects/{project}/custom-function"),
    ("GET", "/api/projects/{project}/aws-custom-function"),
    ("POST", "/api/projects/{project}/aws-custom-function"),
    ("POST", "/api/projects/{project}/check-function"),
    ("GET", "/api/projects/{project}/custom-function-logs"),
    ("GET", "/api/projects/{project}/aws-custom-function-logs"),
    ("GET", "/api/projects/{project}/metricparam"),
    ("POST", "/api/projects/{project}/metricparam"),
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


def policy_violations(template: dict[str, Any], function: str = "ControlPlaneFunction") -> list[str]:
    """List every grant of the function wider than its design allows."""
    properties = template["Resources"][function]["Properties"]
    violations: list[str] = []
    for policy in properties.get("Policies", []):
        if not isinstance(policy, dict) or "Statement" not in policy:
            violations.append(f"policy {policy!r} is a managed policy or policy template, not an inline statement list")
            continue
        for statement in _as_list(policy["Statement"]):
            violations.extend(_statement_violations(statement))
            violations.extend(_storage_violations(statement, STORAGE_GRANTS[function]))
            if function == "ReconcileFunction":
                violations.extend(_reconcile_lambda_violations(statement))
    if properties.get("Role"):
        violations.append("the function names its own Role, which this check cannot read")
    return violations


def _storage_violations(statement: dict[str, Any], allowed: dict[str, list[Any]]) -> list[str]:
    """List S3, SSM and KMS grants outside `allowed`; the AWS managed key aws/ssm needs no KMS grant."""
    if statement.get("Effect") != "Allow":
        return []
    violations = []
    for action in _as_list(statement.get("Action")):
        if action.split(":")[0].lower() not in ("s3", "ssm", "kms"):
            continue
        if action not in allowed:
            violations.append(f"{action} is not granted by design")
            continue
        violations.extend(
            f"{action} on {resource!r}"
            for resource in _as_list(statement.get("Resource"))
            if resource not in allowed[action]
        )
        if "Condition" in statement and action.startswith("ssm:"):
            violations.append(f"{action} has a condition, which this check cannot read")
    return violations


def _reconcile_lambda_violations(statement: dict[str, Any]) -> list[str]:
    actions = [action for action in _as_list(statement.get("Action")) if action.lower().startswith("lambda:")]
    return [f"{action} is not needed to reconcile" for action in actions if action not in RECONCILE_LAMBDA_ACTIONS]


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


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_template_reconcile_policy_least_privilege(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO_ROOT)} is made by `make template`")

    assert policy_violations(_load(path), "ReconcileFunction") == []


def test_template_policy_check_catches_widened_storage_grants() -> None:
    template = _load(TEMPLATES[0])
    for function in ("ControlPlaneFunction", "ReconcileFunction"):
        widened = copy.deepcopy(template)
        statements = widened["Resources"][function]["Properties"]["Policies"][0]["Statement"]
        statements.append({"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"})
        statements.append({"Effect": "Allow", "Action": ["ssm:PutParameter"], "Resource": LABEL_STUDIO_PARAMETERS})
        statements.append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${JobBucket.Arn}/*"}})
        statements.append({"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": LABEL_STUDIO_OBJECTS})
        statements.append({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"})
        statements.append({"Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "*"})

        violations = policy_violations(widened, function)

        assert "ssm:GetParameter on '*'" in violations, function
        assert "ssm:PutParameter is not granted by design" in violations, function
        assert "s3:GetObject on {'Fn::Sub': '${JobBucket.Arn}/*'}" in violations, function
        assert "s3:DeleteObject is not granted by design" in violations, function
        assert "kms:Decrypt is not granted by design" in violations, function
        assert "lambda:UpdateFunctionCode on '*'" in violations, function
    reconcile = copy.deepcopy(template)
    statements = reconcile["Resources"]["ReconcileFunction"]["Properties"]["Policies"][0]["Statement"]
    statements.append(
        {"Effect": "Allow", "Action": "lambda:DeleteFunction", "Resource": {"Fn::Sub": METRIC_FUNCTIONS_ARN}}
    )
    assert policy_violations(reconcile, "ReconcileFunction") == ["lambda:DeleteFunction is not needed to reconcile"]


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


def test_template_label_studio_routes_skip_iam_only() -> None:
    template = _load(TEMPLATES[0])
    events = template["Resources"]["ControlPlaneFunction"]["Properties"]["Events"]
    unsigned = {
        (event["Properties"]["Method"], event["Properties"]["Path"])
        for event in events.values()
        if event["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    other_auth = [name for name, event in events.items() if set(event["Properties"].get("Auth", {})) - {"Authorizer"}]

    assert unsigned == UNSIGNED_ROUTES
    assert other_auth == []


def test_template_api_authorizer_never_empty() -> None:
    # The SAM transform rejects `Authorizer: NONE` on an API without a default authorizer.
    parameter = _load(TEMPLATES[0])["Parameters"]["ApiAuthorizer"]

    assert parameter["Default"] == "AWS_IAM"
    assert "" not in parameter.get("AllowedValues", [""])


def test_template_sets_label_studio_store_and_sdk_token() -> None:
    template = _load(TEMPLATES[0])
    resources = template["Resources"]
    path = {"Fn::Sub": "/custom-metrics/${AWS::StackName}/label-studio"}

    for function in ("ControlPlaneFunction", "ReconcileFunction"):
        environment = resources[function]["Properties"]["Environment"]["Variables"]
        assert environment["CUSTOM_METRICS_LABEL_STUDIO_BUCKET"] == {"Ref": "JobBucket"}, function
        assert environment["CUSTOM_METRICS_LABEL_STUDIO_PARAMETER_PATH"] == path, function
    control_plane = resources["ControlPlaneFunction"]["Properties"]["Environment"]["Variables"]
    assert control_plane["CUSTOM_METRICS_API_TOKEN"] == {"Ref": "SdkApiToken"}
    assert template["Parameters"]["SdkApiToken"]["NoEcho"] is True
    assert template["Parameters"]["SdkApiToken"]["Default"] == ""


def test_template_reconcile_schedule_follows_rate_parameter() -> None:
    template = _load(TEMPLATES[0])
    function = template["Resources"]["ReconcileFunction"]["Properties"]
    (event,) = function["Events"].values()
    scheduled = template["Conditions"]["ReconcileScheduled"]

    assert event["Type"] == "Schedule"
    assert event["Properties"]["State"] == {"Fn::If": ["ReconcileScheduled", "ENABLED", "DISABLED"]}
    assert event["Properties"]["Schedule"] == {
        "Fn::If": [
            "ReconcileEveryMinute",
            "rate(1 minute)",
            {"Fn::If": ["ReconcileScheduled", {"Fn::Sub": "rate(${ReconcileRateMinutes} minutes)"}, "rate(1 day)"]},
        ]
    }
    assert scheduled == {
        "Fn::Not": [
            {
                "Fn::Or": [
                    {"Fn::Equals": [{"Ref": "ReconcileRateMinutes"}, ""]},
                    {"Fn::Equals": [{"Ref": "ReconcileRateMinutes"}, "0"]},
                ]
            }
        ]
    }
    module, handler = function["Handler"].split(".")
    source = (REPO_ROOT / function["CodeUri"] / f"{module}.py").read_text("utf-8")
    assert f"def {handler}(" in source


def test_template_job_expiry_spares_label_studio_data() -> None:
    rules = _load(TEMPLATES[0])["Resources"]["JobBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]

    assert [rule.get("Prefix") for rule in rules if "ExpirationInDays" in rule] == ["jobs/"]
