"""Selection of the connection store from the settings: S3 and SSM when the stack's variables are set.

The stack sets CUSTOM_METRICS_LABEL_STUDIO_BUCKET and CUSTOM_METRICS_LABEL_STUDIO_PARAMETER_PATH on
its functions. A shell that exports the same two variables and has AWS credentials runs `connect`,
`reconcile` and `pull` against the stack's store. Without them, every command uses the state directory.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from custom_metrics.labelstudio.aws_store import AwsConnectionStore, AwsStoreSettings, S3MetricParamStore
from custom_metrics.labelstudio.store import ConnectionStorage, ConnectionStore


def open_store(state_dir: Path, environ: Mapping[str, str] | None = None) -> ConnectionStorage:
    """Return the AWS store when its bucket is set in the environment, else the store in `state_dir`."""
    settings = AwsStoreSettings.from_environment(environ)
    if settings is None:
        return ConnectionStore(state_dir)
    return _aws_store(settings)


def open_metric_param_store(environ: Mapping[str, str] | None = None) -> S3MetricParamStore | None:
    """Return the S3 store of label-studio-sdk metric parameters when the stack's bucket is set, else None."""
    settings = AwsStoreSettings.from_environment(environ)
    return _aws_store(settings).metric_params() if settings is not None else None


@functools.cache
def _aws_store(settings: AwsStoreSettings) -> AwsConnectionStore:
    # One store per settings and process, so that a warm Lambda reuses its S3 and SSM clients.
    return AwsConnectionStore(settings)
