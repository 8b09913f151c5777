#!/usr/bin/env bash
# Start LocalStack's S3 and SQS without Docker (the runtime from PyPI, in a Python 3.13 venv that
# scripts/install-deps creates). Usage: localstack/start.sh PORT DATA_DIR LOG_FILE PID_FILE
# Returns once the process is started; the caller waits for /_localstack/health.
set -euo pipefail
PORT=$1 DATA=$2 LOG=$3 PIDFILE=$4
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
TOOLS=$SCREENREC_TOOLS
rm -rf "$DATA"
# OVERRIDE_IN_DOCKER=0: these machines have /.dockerenv but no Docker engine.
# S3_SKIP_SIGNATURE_VALIDATION=0: presigned URLs are checked as S3 checks them (a signed
# Content-Length or checksum binds the body).
OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$DATA" SERVICES=s3,sqs SQS_ENDPOINT_STRATEGY=path \
  GATEWAY_LISTEN="127.0.0.1:$PORT" EAGER_SERVICE_LOADING=1 SKIP_SSL_CERT_DOWNLOAD=1 \
  DISABLE_EVENTS=1 S3_SKIP_SIGNATURE_VALIDATION=0 \
  nohup "$TOOLS/localstack/bin/python" -m localstack.runtime.main >"$LOG" 2>&1 &
echo $! >"$PIDFILE"
