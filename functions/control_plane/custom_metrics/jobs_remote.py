"""Agreement jobs on a deployed stack, for the CLI's `agreement --async` and `job` with `--endpoint`."""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request
from typing import Any

import orjson

from custom_metrics.errors import BackendError, InvalidInputError
from custom_metrics.jobs import JobOptions, require_job_id
from custom_metrics.remote import RemoteClient

logger = logging.getLogger(__name__)

# Exports up to this size go inline in the request; API Gateway rejects request bodies over 10 MB.
MAX_INLINE_TASKS_BYTES = 6 * 1024 * 1024
_TRANSFER_TIMEOUT_SECONDS = 600.0


class RemoteJobs:
    """Creates and polls agreement jobs through the stack's API, uploading large exports to S3."""

    def __init__(self, client: RemoteClient) -> None:
        self.client = client

    def create(self, project: str, tasks: Any, options: JobOptions) -> dict[str, Any]:
        body = {key: value for key, value in options.to_dict().items() if value is not None}
        path = f"/projects/{urllib.parse.quote(project, safe='')}/agreement-jobs"
        data = orjson.dumps(tasks)
        if len(data) <= MAX_INLINE_TASKS_BYTES:
            return self.client.request("POST", path, body={**body, "tasks": tasks})
        created = self.client.request("POST", path, body=body)
        upload = created.get("upload")
        if not upload:
            raise InvalidInputError(
                f"the export is {len(data)} bytes and the service offered no upload URL; "
                f"split it into files of at most {MAX_INLINE_TASKS_BYTES} bytes"
            )
        _transfer("PUT", upload["url"], data)
        logger.info("export uploaded", extra={"job_id": created["job_id"], "bytes": len(data)})
        return self.client.request("POST", f"/agreement-jobs/{created['job_id']}/start")

    def status(self, job_id: str) -> dict[str, Any]:
        return self.client.request("GET", f"/agreement-jobs/{require_job_id(job_id)}")


def fetch_result(url: str) -> dict[str, Any]:
    """Download a finished job's result JSON from its presigned HTTPS URL."""
    result: dict[str, Any] = orjson.loads(_transfer("GET", url, None))
    return result


def _transfer(method: str, url: str, data: bytes | None) -> bytes:
    if urllib.parse.urlsplit(url).scheme != "https":
        raise BackendError(f"the job URL {url[:60]!r} is not an HTTPS URL; check the endpoint")
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=_TRANSFER_TIMEOUT_SECONDS) as response:  # noqa: S310
            body: bytes = response.read()
    except OSError as error:
        raise BackendError(f"{method} of the job data at S3 failed ({error}); retry the command") from error
    return body
