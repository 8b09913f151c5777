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
  # recordings/{id}/output.{webm|mkv|mp4}. Nothing else in the bucket is the functions'.
  chunk_objects_arn      = "${aws_s3_bucket.recordings.arn}/chunks/*"
  recordings_objects_arn = "${aws_s3_bucket.recordings.arn}/recordings/*"

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

  # HeadBucket (readiness), and 404 rather than 403 from HeadObject on a chunk not uploaded.
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

  statement {
    sid       = "EnqueueMerge"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.merge.arn]
  }
}

# --- ws -------------------------------------------------------------------------------------
# Reads state from Redis; the status of a ready recording (status, and the snapshot sent on
# subscribe) carries a presigned download URL, which works only if the role may read it.
data "aws_iam_policy_document" "ws" {
  source_policy_documents = [data.aws_iam_policy_document.common["ws"].json]

  statement {
    sid       = "PresignDownloads"
    actions   = ["s3:GetObject"]
    resources = [local.recordings_objects_arn]
  }

  statement {
    sid       = "EnvironmentKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

# --- merge ----------------------------------------------------------------------------------
data "aws_iam_policy_document" "merge" {
  source_policy_documents = [data.aws_iam_policy_document.common["merge"].json]

  # Read the chunks, delete them once merged.
  statement {
    sid       = "ChunkObjects"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.chunk_objects_arn]
  }

  # Write the output (multipart for large outputs) and the manifest; presign the download
  # sent with recordingReady.
  statement {
    sid = "RecordingObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = [local.recordings_objects_arn]
  }

  # 404 rather than 403 from HeadObject/GetObject on a missing chunk.
  statement {
    sid       = "RecordingsBucket"
    actions   = ["s3:ListBucket"]
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
}
