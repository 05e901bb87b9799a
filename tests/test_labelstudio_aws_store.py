"""The AWS connection store under moto: connection and annotation map in S3, secrets in SSM Parameter Store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from custom_metrics.cli_labelstudio import default_receiver_url
from custom_metrics.errors import BackendError, ConfigurationError, ConflictError, InvalidInputError
from custom_metrics.labelstudio import stores
from custom_metrics.labelstudio.aws_store import (
    BUCKET_VARIABLE,
    MAX_MAP_WRITE_ATTEMPTS,
    PARAMETER_PATH_VARIABLE,
    AwsConnectionStore,
    AwsStoreSettings,
    S3AnnotationMap,
)
from custom_metrics.labelstudio.store import Connection, ConnectionNotFoundError, ConnectionStore

REGION = "us-east-1"
BUCKET = "custom-metrics-jobs-test"
PARAMETER_PATH = "/custom-metrics/test-stack/label-studio"
SETTINGS = AwsStoreSettings(bucket=BUCKET, parameter_path=PARAMETER_PATH, region=REGION)


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield {"s3": s3, "ssm": boto3.client("ssm", region_name=REGION)}


@pytest.fixture
def store(aws: dict[str, Any]) -> AwsConnectionStore:
    return AwsConnectionStore(SETTINGS, s3_client=aws["s3"], ssm_client=aws["ssm"])


def test_aws_store_save_and_load_connection(store: AwsConnectionStore, aws: dict[str, Any]) -> None:
    connection = Connection(project="p1", url="http://127.0.0.1:8080", ls_project=3, score_key="iaa", webhook_id=7)

    store.save(connection)

    assert store.load("p1") == connection
    assert store.exists("p1") is True
    keys = [item["Key"] for item in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["label-studio/p1/connection.json"]


def test_aws_store_load_missing_connection_is_not_found(store: AwsConnectionStore) -> None:
    with pytest.raises(ConnectionNotFoundError, match="custom-metrics connect p1"):
        store.load("p1")
    assert store.exists("p1") is False


def test_aws_store_rejects_unsafe_project_names(store: AwsConnectionStore) -> None:
    for name in ("../p1", "p1/connection.json", ""):
        with pytest.raises(InvalidInputError):
            store.exists(name)


def test_aws_store_save_rejects_reserved_score_key(store: AwsConnectionStore) -> None:
    with pytest.raises(InvalidInputError, match="reserved"):
        store.save(Connection(project="p1", url="http://127.0.0.1:8080", ls_project=3, score_key="agreement"))


def test_aws_store_lists_connected_projects(store: AwsConnectionStore) -> None:
    for project in ("beta", "alpha"):
        store.save(Connection(project=project, url="http://127.0.0.1:8080", ls_project=1))
    store.save_sync_state("gamma", {"last_reconciled_at": "2026-01-01T00:00:00+00:00"})  # Not connected.

    assert store.projects() == ["alpha", "beta"]


def test_aws_store_token_is_secure_string(store: AwsConnectionStore, aws: dict[str, Any]) -> None:
    store.save_token("p1", "  ls-token-123  ")

    parameter = aws["ssm"].get_parameter(Name=f"{PARAMETER_PATH}/p1/token")["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert parameter["Value"] != "ls-token-123"  # Not decrypted without WithDecryption.
    assert store.token("p1") == "ls-token-123"


def test_aws_store_token_overwrites_previous(store: AwsConnectionStore) -> None:
    store.save_token("p1", "first")
    store.save_token("p1", "second")

    assert store.token("p1") == "second"


def test_aws_store_token_falls_back_to_environment(store: AwsConnectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "from-env")

    assert store.token("p1") == "from-env"


def test_aws_store_token_missing_is_not_found(store: AwsConnectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)

    with pytest.raises(ConnectionNotFoundError, match="LABEL_STUDIO_API_KEY"):
        store.token("p1")


def test_aws_store_empty_token_rejected(store: AwsConnectionStore) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        store.save_token("p1", "   ")


def test_aws_store_webhook_secret_created_once(store: AwsConnectionStore, aws: dict[str, Any]) -> None:
    assert store.webhook_secret("p1") is None

    created = store.webhook_secret("p1", create=True)
    again = store.webhook_secret("p1", create=True)

    assert created is not None
    assert len(created) >= 40
    assert again == created
    assert store.webhook_secret("p1") == created
    parameter = aws["ssm"].get_parameter(Name=f"{PARAMETER_PATH}/p1/webhook-secret")["Parameter"]
    assert parameter["Type"] == "SecureString"


def test_aws_store_webhook_secret_keeps_concurrent_winner(store: AwsConnectionStore, aws: dict[str, Any]) -> None:
    name = f"{PARAMETER_PATH}/p1/webhook-secret"
    original_get = store._get_parameter
    calls = {"count": 0}

    def get_then_lose_race(parameter: str) -> str | None:
        calls["count"] += 1
        if calls["count"] == 1:
            # Another `connect` creates the secret between this read and the write.
            aws["ssm"].put_parameter(Name=name, Value="winner-secret", Type="SecureString")
            return None
        return original_get(parameter)

    store._get_parameter = get_then_lose_race  # type: ignore[method-assign]

    assert store.webhook_secret("p1", create=True) == "winner-secret"


def test_aws_store_ssm_failure_names_parameter(store: AwsConnectionStore) -> None:
    with Stubber(store._ssm) as stubber:
        stubber.add_client_error("put_parameter", service_error_code="AccessDeniedException", http_status_code=400)

        with pytest.raises(BackendError, match=f"could not write parameter {PARAMETER_PATH}/p1/token") as raised:
            store.save_token("p1", "token-value")

    assert "token-value" not in raised.value.message
    assert "AccessDeniedException" in raised.value.message


def test_aws_store_missing_bucket_is_backend_error(aws: dict[str, Any]) -> None:
    store = AwsConnectionStore(
        AwsStoreSettings(bucket="no-such-bucket", parameter_path=PARAMETER_PATH, region=REGION),
        s3_client=aws["s3"],
        ssm_client=aws["ssm"],
    )

    with pytest.raises(BackendError, match=re.escape("s3://no-such-bucket/label-studio/p1/connection.json")):
        store.load("p1")


def test_aws_store_sync_state_round_trip(store: AwsConnectionStore) -> None:
    assert store.sync_state("p1") == {}

    store.save_sync_state("p1", {"last_reconciled_at": "2026-01-01T00:00:00+00:00", "written": 3})

    assert store.sync_state("p1") == {"last_reconciled_at": "2026-01-01T00:00:00+00:00", "written": 3}


def test_aws_annotation_map_set_and_find(store: AwsConnectionStore) -> None:
    mapping = store.annotation_map("p1")

    mapping.set_task(10, [1, 2])
    mapping.set_task(11, [3])
    mapping.set_task(10, [2, 4])  # Annotation 1 was deleted, 4 added.

    assert mapping.tasks_of([1, 2, 3, 4, 99]) == ({10, 11}, [1, 99])


def test_aws_annotation_map_remove_and_replace(store: AwsConnectionStore) -> None:
    mapping = store.annotation_map("p1")
    mapping.set_task(10, [1, 2])
    mapping.set_task(11, [3])

    mapping.remove_tasks([10])
    assert mapping.tasks_of([1, 3]) == ({11}, [1])

    mapping.replace({5: 20})
    assert mapping.tasks_of([3, 5]) == ({20}, [3])


def test_aws_annotation_map_retries_after_concurrent_write(aws: dict[str, Any]) -> None:
    key = "label-studio/p1/annotations.json"
    mapping = S3AnnotationMap(aws["s3"], BUCKET, key)
    mapping.set_task(10, [1])
    other_writer = S3AnnotationMap(aws["s3"], BUCKET, key)
    original_read = mapping._read_with_etag
    reads = {"count": 0}

    def read_then_interleave() -> tuple[dict[str, int], str | None]:
        result = original_read()
        reads["count"] += 1
        if reads["count"] == 1:
            other_writer.set_task(11, [2])  # Lands between this read and the conditional write.
        return result

    mapping._read_with_etag = read_then_interleave  # type: ignore[method-assign]
    mapping.set_task(12, [3])

    assert reads["count"] == 2
    assert mapping.tasks_of([1, 2, 3]) == ({10, 11, 12}, [])


def test_aws_annotation_map_first_write_is_conditional(aws: dict[str, Any]) -> None:
    key = "label-studio/p1/annotations.json"
    mapping = S3AnnotationMap(aws["s3"], BUCKET, key)
    original_read = mapping._read_with_etag
    reads = {"count": 0}

    def read_then_create() -> tuple[dict[str, int], str | None]:
        result = original_read()
        reads["count"] += 1
        if reads["count"] == 1:
            aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=b'{"7": 70}')  # Created by another writer.
        return result

    mapping._read_with_etag = read_then_create  # type: ignore[method-assign]
    mapping.set_task(12, [3])

    assert mapping.tasks_of([3, 7]) == ({12, 70}, [])


def test_aws_annotation_map_gives_up_after_max_attempts(aws: dict[str, Any]) -> None:
    key = "label-studio/p1/annotations.json"
    mapping = S3AnnotationMap(aws["s3"], BUCKET, key)
    mapping.set_task(10, [1])
    original_read = mapping._read_with_etag
    counter = iter(range(100, 200))

    def always_interleave() -> tuple[dict[str, int], str | None]:
        result = original_read()
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=f'{{"{next(counter)}": 1}}'.encode())
        return result

    mapping._read_with_etag = always_interleave  # type: ignore[method-assign]

    with pytest.raises(ConflictError, match=f"{MAX_MAP_WRITE_ATTEMPTS} attempts"):
        mapping.set_task(12, [3])


def test_aws_store_settings_absent_without_bucket() -> None:
    assert AwsStoreSettings.from_environment({}) is None


def test_aws_store_settings_from_environment() -> None:
    settings = AwsStoreSettings.from_environment(
        {
            BUCKET_VARIABLE: BUCKET,
            PARAMETER_PATH_VARIABLE: PARAMETER_PATH + "/",
            "LS_LAMBDA_REGION_CUSTOM_METRICS": "eu-west-1",
        }
    )

    assert settings == AwsStoreSettings(bucket=BUCKET, parameter_path=PARAMETER_PATH, region="eu-west-1")


def test_aws_store_settings_need_parameter_path() -> None:
    for path in ("", "relative/path", "/"):
        with pytest.raises(ConfigurationError, match=PARAMETER_PATH_VARIABLE):
            AwsStoreSettings.from_environment({BUCKET_VARIABLE: BUCKET, PARAMETER_PATH_VARIABLE: path})


def test_open_store_selects_by_environment(tmp_path: Path) -> None:
    stores._aws_store.cache_clear()
    try:
        local = stores.open_store(tmp_path, {})
        remote = stores.open_store(tmp_path, {BUCKET_VARIABLE: BUCKET, PARAMETER_PATH_VARIABLE: PARAMETER_PATH})
    finally:
        stores._aws_store.cache_clear()

    assert isinstance(local, ConnectionStore)
    assert isinstance(remote, AwsConnectionStore)
    assert remote.settings.bucket == BUCKET


def test_aws_metric_params_merge_updates(store: AwsConnectionStore) -> None:
    params = store.metric_params()
    assert params.get("12") == {}

    params.update("12", {"metric_name": "exact_match"})
    merged = params.update("12", {"agreement_threshold": 60})

    assert merged == {"metric_name": "exact_match", "agreement_threshold": 60}
    assert params.get("12") == merged


def test_aws_metric_params_keep_concurrent_update(store: AwsConnectionStore, aws: dict[str, Any]) -> None:
    params = store.metric_params()
    params.update("12", {"metric_name": "exact_match"})
    key = "label-studio/12/metric-params.json"
    original_get = aws["s3"].get_object
    calls = {"count": 0}

    def get_then_interleave(**kwargs: Any) -> Any:
        response = original_get(**kwargs)
        calls["count"] += 1
        if calls["count"] == 1:
            # Another update lands between this read and the conditional write.
            aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=b'{"metric_name": "exact_match", "metric_params": {}}')
        return response

    aws["s3"].get_object = get_then_interleave

    merged = params.update("12", {"agreement_threshold": 60})

    assert merged == {"metric_name": "exact_match", "metric_params": {}, "agreement_threshold": 60}


def test_default_receiver_url_follows_endpoint() -> None:
    endpoint = "https://abc123.execute-api.us-east-1.amazonaws.com/v1/"

    assert (
        default_receiver_url(endpoint) == "https://abc123.execute-api.us-east-1.amazonaws.com/v1/webhooks/label-studio"
    )
    assert default_receiver_url(None) == "http://127.0.0.1:8000/webhooks/label-studio"
