#!/usr/bin/env bash
# Run the end-to-end test against a real Label Studio 1.23.2 on 127.0.0.1.
#
# Label Studio (about 1 GB installed) gets its own virtual environment, .venv-label-studio, created
# on first use. The test starts the server with a fresh data folder, runs against it and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

LS_VENV=.venv-label-studio
LS_VERSION=1.23.2
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/pytest ]; then
    make setup
fi

if [ ! -f "$LS_VENV/.installed-$LS_VERSION" ]; then
    echo "installing label-studio==$LS_VERSION into $LS_VENV (several minutes, about 1 GB)" >&2
    "$PYTHON" -m venv "$LS_VENV"
    "$LS_VENV/bin/pip" install --quiet --upgrade pip
    "$LS_VENV/bin/pip" install --quiet "label-studio==$LS_VERSION"
    touch "$LS_VENV/.installed-$LS_VERSION"
fi

export CUSTOM_METRICS_LIVE_LABEL_STUDIO=1
export LABEL_STUDIO_BIN="$PWD/$LS_VENV/bin/label-studio"
exec .venv/bin/pytest -m label_studio tests/test_label_studio_live.py -v "$@"
