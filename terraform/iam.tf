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
  recordings_objects_arn = "${aws_s3_bucket.recordings.arn}/recordings/*"
}

# --- api ----------------------------------------------------------------------------------
data "aws_iam_policy_document" "api" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn["api"].arn}:*"]
  }

  statement {
    sid = "XRay"
    # X-Ray trace ingestion has no resource-level permissions.
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # Chunk uploads (presigned PUT and proxied PUT), manifests, presigned downloads, HeadObject
  # (covered by GetObject) and deletes.
  statement {
    sid       = "RecordingObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.recordings_objects_arn]
  }

  # HeadBucket (readiness) and listing a recording's chunks.
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
    sid       = "EnqueueMerge"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.merge.arn]
  }
}

resource "aws_iam_role_policy" "api" {
  name   = "${local.function_names.api}-policy"
  role   = aws_iam_role.fn["api"].id
  policy = data.aws_iam_policy_document.api.json
}

# --- ws -----------------------------------------------------------------------------------
data "aws_iam_policy_document" "ws" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn["ws"].arn}:*"]
  }

  statement {
    sid       = "XRay"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    sid       = "EnvironmentKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }

  statement {
    sid       = "PostToConnections"
    actions   = ["execute-api:ManageConnections"]
    resources = [local.ws_connections_arn]
  }
}

resource "aws_iam_role_policy" "ws" {
  name   = "${local.function_names.ws}-policy"
  role   = aws_iam_role.fn["ws"].id
  policy = data.aws_iam_policy_document.ws.json
}

# --- merge --------------------------------------------------------------------------------
data "aws_iam_policy_document" "merge" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn["merge"].arn}:*"]
  }

  statement {
    sid       = "XRay"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # Read chunks, write the output (multipart for large outputs), delete merged chunks.
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

  statement {
    sid       = "PostToConnections"
    actions   = ["execute-api:ManageConnections"]
    resources = [local.ws_connections_arn]
  }
}

resource "aws_iam_role_policy" "merge" {
  name   = "${local.function_names.merge}-policy"
  role   = aws_iam_role.fn["merge"].id
  policy = data.aws_iam_policy_document.merge.json
}
