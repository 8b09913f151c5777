#!/usr/bin/env bash
# LocalStack init hook (ready stage): the recordings bucket, with CORS for presigned browser
# PUT/GET, and the merge queue with its dead-letter queue, named as terraform/ names them with
# the default name_prefix. Idempotent, so a restart with persisted state is fine.
#
# In the LocalStack image, awslocal is on PATH. Elsewhere (e.g. run by hand against the
# Docker-less LocalStack of scripts/services) the AWS CLI is used with AWS_ENDPOINT_URL.
set -euo pipefail

BUCKET=${SCREENREC_BUCKET:-screenrec}
QUEUE=${SCREENREC_MERGE_QUEUE:-screenrec-merge}
MAX_RECEIVE_COUNT=${SCREENREC_MERGE_MAX_RECEIVE_COUNT:-3}
CORS_ORIGINS=${SCREENREC_CORS_ORIGINS:-*}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}

if command -v awslocal >/dev/null 2>&1; then
  aws() { awslocal "$@"; }
else
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
  aws() { command aws --endpoint-url "${AWS_ENDPOINT_URL:-http://localhost:4566}" "$@"; }
fi

if ! aws s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
  aws s3api create-bucket --bucket "$BUCKET" >/dev/null
fi
IFS=, read -r -a origin_list <<<"$CORS_ORIGINS"
origins=$(printf '"%s",' "${origin_list[@]}")
aws s3api put-bucket-cors --bucket "$BUCKET" --cors-configuration "$(cat <<JSON
{"CORSRules": [{"AllowedMethods": ["PUT", "GET", "HEAD"], "AllowedOrigins": [${origins%,}],
  "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "Content-Length", "Content-Type"],
  "MaxAgeSeconds": 3600}]}
JSON
)"

dlq_url=$(aws sqs create-queue --queue-name "$QUEUE-dlq" --query QueueUrl --output text)
dlq_arn=$(aws sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn \
  --query Attributes.QueueArn --output text)
queue_url=$(aws sqs create-queue --queue-name "$QUEUE" --query QueueUrl --output text)
redrive=$(printf '{"deadLetterTargetArn":"%s","maxReceiveCount":%s}' "$dlq_arn" "$MAX_RECEIVE_COUNT")
# RedrivePolicy is a JSON document inside a JSON string.
aws sqs set-queue-attributes --queue-url "$queue_url" \
  --attributes "$(printf '{"RedrivePolicy": "%s"}' "${redrive//\"/\\\"}")"

echo "screenrec: bucket $BUCKET, MERGE_QUEUE_URL=$queue_url (dead letters: $dlq_url)"
