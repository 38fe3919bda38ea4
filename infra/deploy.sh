#!/usr/bin/env bash
# Deploy gpuq to Google Cloud (README: Deploy to Google Cloud). The same as `gpuq deploy`: python -m shared.tools.deploy.
#   infra/deploy.sh --project my-project --region europe-west1 --settings deploy.env [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
  echo "no $PYTHON: run 'make test' or 'make dev' once to create .venv, or set PYTHON" >&2
  exit 2
fi
exec "$PYTHON" -m shared.tools.deploy "$@"
