# One execution role per function, each with only the actions that function uses.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each = local.function_names

  name               = "${each.value}-lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# ENI management for the functions, only when they run in the VPC (Redis created here).
resource "aws_iam_role_policy_attachment" "vpc_access" {
  for_each = local.create_redis ? local.function_names : {}

  role       = aws_iam_role.fn[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

locals {
  # Object keys (src/domain/key.rs): chunks/{id}/{index:08} under their own prefix, so a
  # lifecycle rule can expire them; recordings/{id}/manifest.json and
  # recordings/{id}/output.{webm|mkv|mp4}; active/{id}, an empty marker per unfinished
  # recording, so the sweeper lists those alone. Nothing else in the bucket is the functions'.
  chunk_objects_arn      = "${aws_s3_bucket.recordings.arn}/chunks/*"
  recordings_objects_arn = "${aws_s3_bucket.recordings.arn}/recordings/*"
  active_objects_arn     = "${aws_s3_bucket.recordings.arn}/active/*"

  # Each function's policy: the shared statements below plus its own document.
  function_policies = {
    api   = data.aws_iam_policy_document.api.json
    ws    = data.aws_iam_policy_document.ws.json
    merge = data.aws_iam_policy_document.merge.json
  }
}

# --- every function -------------------------------------------------------------------------
data "aws_iam_policy_document" "common" {
  for_each = local.function_names

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn[each.key].arn}:*"]
  }

  statement {
    sid = "XRay"
    # X-Ray trace ingestion has no resource-level permissions.
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # Every function publishes events to WebSocket connections through the Management API.
  statement {
    sid       = "PostToConnections"
    actions   = ["execute-api:ManageConnections"]
    resources = [local.ws_connections_arn]
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.function_names

  name   = "${each.value}-policy"
  role   = aws_iam_role.fn[each.key].id
  policy = local.function_policies[each.key]
}

moved {
  from = aws_iam_role_policy.api
  to   = aws_iam_role_policy.fn["api"]
}

moved {
  from = aws_iam_role_policy.ws
  to   = aws_iam_role_policy.fn["ws"]
}

moved {
  from = aws_iam_role_policy.merge
  to   = aws_iam_role_policy.fn["merge"]
}

# --- api ------------------------------------------------------------------------------------
data "aws_iam_policy_document" "api" {
  source_policy_documents = [data.aws_iam_policy_document.common["api"].json]

  # Chunk uploads: presigned PUTs are signed with this role, proxied PUTs written by it;
  # confirming an upload reads it back (GetObject, also HeadObject); a refused (oversized)
  # presigned upload is deleted.
  statement {
    sid       = "ChunkObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.chunk_objects_arn]
  }

  # Manifests (written and read) and presigned downloads of merged outputs.
  statement {
    sid       = "RecordingObjects"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.recordings_objects_arn]
  }

  # create writes the recording's active/{id} marker; the merge or the sweeper removes it.
  statement {
    sid       = "ActiveMarkers"
    actions   = ["s3:PutObject"]
    resources = [local.active_objects_arn]
  }

  # Listing chunks/{id}/ to rebuild a recording Redis lost; HeadBucket (readiness); 404 rather
  # than 403 from HeadObject on a chunk not uploaded. No s3:prefix condition: HeadBucket and
  # that 404 carry no prefix, so a condition would turn both into 403s.
  statement {
    sid       = "RecordingsBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.recordings.arn]
  }

  # SSE-KMS objects and the encrypted environment.
  statement {
    sid       = "BucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  # stop sends the merge job; a rebuild re-queues a stopped recording. (One statement: the
  # provider refuses a document with two statements of the same Sid.)
  statement {
    sid       = "EnqueueMerge"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.merge.arn]
  }

  # Webhook deliveries (recording.created, .stopped, ...) go to the webhook queue, when there
  # is one (webhooks.tf): no statement at all otherwise.
  dynamic "statement" {
    for_each = aws_sqs_queue.webhooks

    content {
      sid       = "EnqueueWebhooks"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value.arn]
    }
  }
}

# --- ws -------------------------------------------------------------------------------------
# Reads state from Redis. On a miss ($connect's authorize, status) it rebuilds the recording
# from the store like api does: the manifest, a listing of chunks/{id}/ and each chunk's
# digest, and re-queues a stopped one. The status of a ready recording (status, and the
# snapshot sent on subscribe) carries a presigned download URL, which works only if the role
# may read it. It writes nothing to the bucket.
data "aws_iam_policy_document" "ws" {
  source_policy_documents = [data.aws_iam_policy_document.common["ws"].json]

  statement {
    sid       = "PresignDownloads"
    actions   = ["s3:GetObject"]
    resources = [local.recordings_objects_arn]
  }

  # HeadObject for a chunk's digest (its metadata), GetObject for one written without it.
  statement {
    sid       = "RebuildChunks"
    actions   = ["s3:GetObject"]
    resources = [local.chunk_objects_arn]
  }

  # The chunks/{id}/ listing, and 404 rather than 403 for a chunk deleted since (see api).
  statement {
    sid       = "RecordingsBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.recordings.arn]
  }

  statement {
    sid       = "EnqueueMerge"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.merge.arn]
  }

  # It builds the same recording service as api, whose events go out as webhook deliveries,
  # when webhooks are configured (see api).
  dynamic "statement" {
    for_each = aws_sqs_queue.webhooks

    content {
      sid       = "EnqueueWebhooks"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value.arn]
    }
  }

  # The encrypted environment, and the SSE-KMS objects it reads or presigns.
  statement {
    sid       = "EnvironmentKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

# --- merge ----------------------------------------------------------------------------------
# The merge, and the sweep on the EventBridge schedule (sweep.tf).
data "aws_iam_policy_document" "merge" {
  source_policy_documents = [data.aws_iam_policy_document.common["merge"].json]

  # Read the chunks, delete them once merged; the sweep deletes those of expired and deleted
  # abandoned recordings, and chunks no manifest owns.
  statement {
    sid       = "ChunkObjects"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.chunk_objects_arn]
  }

  # Write the output (multipart for large outputs) and the manifest; presign the download
  # sent with recordingReady. The sweep reads manifests, writes an abandoned recording's,
  # deletes recordings past retention_days or abandoned with abandoned = delete, and aborts
  # multipart uploads left for a day (only outputs are multipart).
  statement {
    sid = "RecordingObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.recordings_objects_arn]
  }

  # A finished recording's marker is removed by its merge, a stale one by the sweep.
  statement {
    sid       = "ActiveMarkers"
    actions   = ["s3:DeleteObject"]
    resources = [local.active_objects_arn]
  }

  # The sweep's listings (active/, recordings/, chunks/) and a rebuild's (chunks/{id}/); 404
  # rather than 403 from HeadObject/GetObject on a missing chunk (no s3:prefix condition, see
  # api). ListBucketMultipartUploads: the sweep finds uploads left behind.
  statement {
    sid       = "RecordingsBucket"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.recordings.arn]
  }

  statement {
    sid       = "BucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid = "ConsumeMergeQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [aws_sqs_queue.merge.arn]
  }

  # The sweep re-queues stuck merges and abandoned recordings; a rebuild, a stopped recording.
  statement {
    sid       = "EnqueueMerge"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.merge.arn]
  }

  # When webhooks are configured (webhooks.tf): the webhook queue's event source mapping reads
  # and deletes with this role. No ChangeMessageVisibility: the mapping does not need it and
  # the code does not call it on this queue (a message handed out early is sent on again).
  dynamic "statement" {
    for_each = aws_sqs_queue.webhooks

    content {
      sid       = "ConsumeWebhookQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [statement.value.arn]
    }
  }

  # recording.ready/.failed, the sweep's .abandoned/.deleted, and every retry and every
  # message sent on to wait longer than SQS's 900 s delay.
  dynamic "statement" {
    for_each = aws_sqs_queue.webhooks

    content {
      sid       = "EnqueueWebhooks"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value.arn]
    }
  }
}
