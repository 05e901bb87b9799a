"""Connections to Label Studio kept on AWS: settings and the annotation map in S3, secrets in SSM.

Layout, for the bucket B and the parameter path P that the stack sets on its functions:

    s3://B/label-studio/<project>/connection.json    URL, Label Studio project id, score key, pair mode
    s3://B/label-studio/<project>/annotations.json   annotation id -> task id, for deletion events
    s3://B/label-studio/<project>/sync.json          time and outcome of the last reconcile
    s3://B/label-studio/<project>/metric-params.json the label-studio-sdk metric parameters (`metricparam/`)
    P/<project>/token                               SecureString: the Label Studio API token
    P/<project>/webhook-secret                      SecureString: the secret that webhooks must send

The secrets are SSM Parameter Store SecureString parameters rather than Secrets Manager secrets:
standard parameters cost nothing, IAM can grant GetParameter on one path, and neither secret is
rotated on a schedule. They use the AWS managed key aws/ssm, which lets every IAM principal of the
account decrypt (AWS Systems Manager User Guide, "Restricting decryption of SecureString parameter
values"), so the ssm:GetParameter grant on the path is what guards them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from custom_metrics.backends.aws_client import error_code
from custom_metrics.errors import BackendError, ConfigurationError, ConflictError
from custom_metrics.labelstudio.client import LabelStudioClient
from custom_metrics.labelstudio.store import (
    SECRET_BYTES,
    AnnotationMapBase,
    Connection,
    MappingChange,
    not_connected_error,
    parse_annotation_map,
    require_token_value,
    token_or_environment,
    validate_pair_mode,
    validate_project,
    validate_score_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

BUCKET_VARIABLE = "CUSTOM_METRICS_LABEL_STUDIO_BUCKET"
PARAMETER_PATH_VARIABLE = "CUSTOM_METRICS_LABEL_STUDIO_PARAMETER_PATH"
REGION_VARIABLE = "LS_LAMBDA_REGION_CUSTOM_METRICS"
KEY_PREFIX = "label-studio/"
# Attempts of one conditional read-modify-write of the annotation map before it gives up.
MAX_MAP_WRITE_ATTEMPTS = 8

_CONNECTION_KEY = "connection.json"
_MAP_KEY = "annotations.json"
_SYNC_KEY = "sync.json"
_METRIC_PARAMS_KEY = "metric-params.json"
_TOKEN_NAME = "token"  # noqa: S105 (a parameter name)
_SECRET_NAME = "webhook-secret"  # noqa: S105 (a parameter name)
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# S3 rejects a conditional write when the object changed since it was read (412), or when another
# conditional write to the same key is in progress (409).
_WRITE_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


@dataclass(frozen=True)
class AwsStoreSettings:
    """Bucket, SSM parameter path and region of the AWS connection store."""

    bucket: str
    parameter_path: str
    region: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AwsStoreSettings | None:
        """Read the settings; return None when no bucket is set, which selects the state-directory store."""
        env = os.environ if environ is None else environ
        bucket = env.get(BUCKET_VARIABLE, "").strip()
        if not bucket:
            return None
        path = env.get(PARAMETER_PATH_VARIABLE, "").strip().rstrip("/")
        if not path.startswith("/") or len(path) < 2:
            raise ConfigurationError(
                f"setting {PARAMETER_PATH_VARIABLE}={path!r} is invalid; set it to the SSM parameter path of the "
                f"Label Studio secrets, such as /custom-metrics/STACK/label-studio (the stack output "
                f"LabelStudioParameterPath), whenever {BUCKET_VARIABLE} is set"
            )
        return cls(bucket=bucket, parameter_path=path, region=env.get(REGION_VARIABLE, "").strip() or None)


class AwsConnectionStore:
    """Implements `ConnectionStorage` on an S3 bucket and SSM Parameter Store."""

    def __init__(
        self, settings: AwsStoreSettings, *, s3_client: S3Client | None = None, ssm_client: Any = None
    ) -> None:
        config = Config(region_name=settings.region) if settings.region else None
        self.settings = settings
        self._s3 = s3_client or boto3.client("s3", config=config)
        self._ssm = ssm_client or boto3.client("ssm", config=config)

    # Connection ---------------------------------------------------------------------------

    def save(self, connection: Connection) -> None:
        validate_score_key(connection.score_key)
        validate_pair_mode(connection.pair_mode)
        body = json.dumps(connection.to_json(), indent=2, sort_keys=True).encode()
        self._put(self._key(connection.project, _CONNECTION_KEY), body)

    def load(self, project: str) -> Connection:
        raw = self._get(self._key(project, _CONNECTION_KEY))
        if raw is None:
            raise not_connected_error(project)
        return Connection.from_json(json.loads(raw))

    def exists(self, project: str) -> bool:
        return self._get(self._key(project, _CONNECTION_KEY)) is not None

    def projects(self) -> list[str]:
        names: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        with s3_errors(self.settings.bucket, KEY_PREFIX):
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=KEY_PREFIX):
                for item in page.get("Contents", []):
                    project, _, name = item["Key"].removeprefix(KEY_PREFIX).partition("/")
                    if name == _CONNECTION_KEY:
                        names.append(project)
        return sorted(names)

    # Secrets ------------------------------------------------------------------------------

    def save_token(self, project: str, token: str) -> None:
        self._put_parameter(self._parameter(project, _TOKEN_NAME), require_token_value(token), overwrite=True)

    def token(self, project: str) -> str:
        return token_or_environment(project, self._get_parameter(self._parameter(project, _TOKEN_NAME)))

    def webhook_secret(self, project: str, *, create: bool = False) -> str | None:
        """Return the project's webhook secret; with `create`, make one when there is none."""
        name = self._parameter(project, _SECRET_NAME)
        stored = self._get_parameter(name)
        if stored or not create:
            return stored or None
        if self._put_parameter(name, secrets.token_urlsafe(SECRET_BYTES), overwrite=False):
            logger.info("webhook secret created", extra={"project": project})
        # Reading back returns the winner when another `connect` created the secret at the same time.
        return self._get_parameter(name)

    def client(self, connection: Connection) -> LabelStudioClient:
        return LabelStudioClient(connection.url, self.token(connection.project))

    # Annotation -> task map and sync state ------------------------------------------------

    def annotation_map(self, project: str) -> S3AnnotationMap:
        return S3AnnotationMap(self._s3, self.settings.bucket, self._key(project, _MAP_KEY))

    def metric_params(self) -> S3MetricParamStore:
        return S3MetricParamStore(self._s3, self.settings.bucket)

    def save_sync_state(self, project: str, state: dict[str, Any]) -> None:
        self._put(self._key(project, _SYNC_KEY), json.dumps(state, indent=2, sort_keys=True).encode())

    def sync_state(self, project: str) -> dict[str, Any]:
        return _json_object(self._get(self._key(project, _SYNC_KEY)))

    # AWS calls ----------------------------------------------------------------------------

    def _key(self, project: str, name: str) -> str:
        return f"{KEY_PREFIX}{validate_project(project)}/{name}"

    def _parameter(self, project: str, name: str) -> str:
        return f"{self.settings.parameter_path}/{validate_project(project)}/{name}"

    def _get(self, key: str) -> bytes | None:
        logger.debug("s3 get_object", extra={"bucket": self.settings.bucket, "key": key})
        with s3_errors(self.settings.bucket, key):
            try:
                body: bytes = self._s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
            except ClientError as error:
                if error_code(error) in _MISSING_KEY_CODES:
                    return None
                raise
        return body

    def _put(self, key: str, body: bytes) -> None:
        logger.debug("s3 put_object", extra={"bucket": self.settings.bucket, "key": key})
        with s3_errors(self.settings.bucket, key):
            self._s3.put_object(Bucket=self.settings.bucket, Key=key, Body=body, ContentType="application/json")

    def _get_parameter(self, name: str) -> str | None:
        logger.debug("ssm get_parameter", extra={"parameter": name})
        try:
            response = self._ssm.get_parameter(Name=name, WithDecryption=True)
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return None
            raise _ssm_error(error, name, "read") from error
        value: str = response["Parameter"]["Value"]
        return value

    def _put_parameter(self, name: str, value: str, *, overwrite: bool) -> bool:
        """Store `value` as a SecureString; return False when it exists and `overwrite` is False."""
        logger.debug("ssm put_parameter", extra={"parameter": name, "overwrite": overwrite})
        try:
            self._ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=overwrite, Tier="Standard")
        except ClientError as error:
            if not overwrite and error_code(error) == "ParameterAlreadyExists":
                return False
            raise _ssm_error(error, name, "write") from error
        return True


class S3AnnotationMap(AnnotationMapBase):
    """The annotation map in one S3 object, changed by conditional writes.

    Each change reads the object and its ETag, then writes with `If-Match` (or `If-None-Match: *`
    when there is no object yet). When another Lambda invocation wrote in between, S3 rejects the
    write and the change is applied again to a fresh read.
    """

    def __init__(self, s3_client: S3Client, bucket: str, key: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.key = key

    def _read(self) -> dict[str, int]:
        return self._read_with_etag()[0]

    def _update(self, change: MappingChange) -> None:
        for _attempt in range(MAX_MAP_WRITE_ATTEMPTS):
            mapping, etag = self._read_with_etag()
            change(mapping)
            if self._write_if_unchanged(mapping, etag):
                return
            logger.info("annotation map changed during an update; retrying", extra={"key": self.key})
        raise ConflictError(
            f"the annotation map s3://{self.bucket}/{self.key} changed during each of {MAX_MAP_WRITE_ATTEMPTS} "
            "attempts to update it; run `custom-metrics reconcile` to rebuild it"
        )

    def _read_with_etag(self) -> tuple[dict[str, int], str | None]:
        raw, etag = read_with_etag(self._s3, self.bucket, self.key)
        return (parse_annotation_map(raw) if raw is not None else {}), etag

    def _write_if_unchanged(self, mapping: dict[str, int], etag: str | None) -> bool:
        body = json.dumps(mapping, sort_keys=True).encode()
        return write_if_unchanged(self._s3, self.bucket, self.key, body, etag)


class S3MetricParamStore:
    """Implements the SDK routes' `MetricParamStore` with one S3 object per project.

    The object is `label-studio/<project>/metric-params.json`, and updates merge by the same
    conditional writes as the annotation map, so two concurrent updates both take effect.
    """

    def __init__(self, s3_client: S3Client, bucket: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket

    def get(self, project: str) -> dict[str, Any]:
        raw, _etag = read_with_etag(self._s3, self.bucket, self._key(project))
        return _json_object(raw)

    def update(self, project: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        key = self._key(project)
        for _attempt in range(MAX_MAP_WRITE_ATTEMPTS):
            raw, etag = read_with_etag(self._s3, self.bucket, key)
            merged = {**_json_object(raw), **changes}
            if write_if_unchanged(self._s3, self.bucket, key, json.dumps(merged, sort_keys=True).encode(), etag):
                logger.info("metric parameters updated", extra={"project": project, "fields": sorted(changes)})
                return merged
        raise ConflictError(
            f"the metric parameters of project {project!r} changed during each of {MAX_MAP_WRITE_ATTEMPTS} "
            "attempts to update them; send the update again"
        )

    def _key(self, project: str) -> str:
        return f"{KEY_PREFIX}{validate_project(project)}/{_METRIC_PARAMS_KEY}"


def read_with_etag(s3: S3Client, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """Return the object's body and ETag, or (None, None) when there is no such object."""
    with s3_errors(bucket, key):
        try:
            response = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error_code(error) in _MISSING_KEY_CODES:
                return None, None
            raise
        return response["Body"].read(), response["ETag"]


def write_if_unchanged(s3: S3Client, bucket: str, key: str, body: bytes, etag: str | None) -> bool:
    """Write `body` only if the object still has `etag` (or still does not exist); return False if not."""
    with s3_errors(bucket, key):
        try:
            if etag is None:
                s3.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=body, IfMatch=etag)
        except ClientError as error:
            if error_code(error) in _WRITE_CONFLICT_CODES:
                return False
            raise
    return True


def _json_object(raw: bytes | None) -> dict[str, Any]:
    body = json.loads(raw) if raw is not None else {}
    return body if isinstance(body, dict) else {}


@contextlib.contextmanager
def s3_errors(bucket: str, key: str) -> Iterator[None]:
    """Turn an S3 ClientError into a BackendError that names the bucket, the key and the next step."""
    try:
        yield
    except ClientError as error:
        raise BackendError(
            f"S3 request on s3://{bucket}/{key} failed with {error_code(error)}; check that the bucket exists and "
            "that the role may read and write under label-studio/ (the stack grants it)"
        ) from error


def _ssm_error(error: ClientError, name: str, operation: str) -> BackendError:
    return BackendError(
        f"SSM Parameter Store could not {operation} parameter {name} ({error_code(error)}); check that the "
        "role may use ssm:GetParameter (and ssm:PutParameter for `connect`) on that path"
    )
