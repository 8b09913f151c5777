locals {
  merge_timeout_secs = 900

  vpc_subnet_ids         = local.create_redis ? var.subnet_ids : []
  vpc_security_group_ids = local.create_redis ? [aws_security_group.lambda[0].id] : []

  common_env = {
    REDIS_URL    = local.redis_url
    REDIS_PREFIX = var.redis_prefix
    LOG_FORMAT   = "json"
  }
}

resource "aws_cloudwatch_log_group" "fn" {
  for_each = local.function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# --- api: the HTTP API behind API Gateway (lambda_http over the axum Router) ---------------
resource "aws_lambda_function" "api" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway; a DLQ only applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the cargo lambda build does not produce; the zip hash is tracked by source_code_hash.
  function_name    = local.function_names.api
  description      = "screenrec HTTP API"
  role             = aws_iam_role.fn["api"].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.api_zip
  source_code_hash = filebase64sha256(var.api_zip)
  memory_size      = var.api_memory_mb
  timeout          = 29 # the HTTP API integration limit is 30 s
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.reserved_concurrency.api

  environment {
    variables = merge(local.common_env, {
      STORAGE          = "s3"
      S3_BUCKET        = aws_s3_bucket.recordings.bucket
      PRESIGN_TTL_SECS = tostring(var.presign_ttl_secs)
      MAX_CHUNK_BYTES  = tostring(var.max_chunk_bytes)
      MERGE_QUEUE_URL  = aws_sqs_queue.merge.url
    })
  }

  tracing_config {
    mode = "Active"
  }

  vpc_config {
    subnet_ids         = local.vpc_subnet_ids
    security_group_ids = local.vpc_security_group_ids
  }

  depends_on = [aws_cloudwatch_log_group.fn, aws_iam_role_policy.api]
}

# --- ws: the WebSocket API's $connect / $disconnect / $default ----------------------------
resource "aws_lambda_function" "ws" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway; a DLQ only applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the cargo lambda build does not produce; the zip hash is tracked by source_code_hash.
  function_name    = local.function_names.ws
  description      = "screenrec WebSocket routes"
  role             = aws_iam_role.fn["ws"].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.ws_zip
  source_code_hash = filebase64sha256(var.ws_zip)
  memory_size      = var.ws_memory_mb
  timeout          = 10
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.reserved_concurrency.ws

  environment {
    variables = merge(local.common_env, {
      APIGW_MANAGEMENT_ENDPOINT = local.apigw_management_endpoint
    })
  }

  tracing_config {
    mode = "Active"
  }

  vpc_config {
    subnet_ids         = local.vpc_subnet_ids
    security_group_ids = local.vpc_security_group_ids
  }

  depends_on = [aws_cloudwatch_log_group.fn, aws_iam_role_policy.ws]
}

# --- merge: SQS-driven ffmpeg merge ---------------------------------------------------------
# The layer zip holds bin/ffmpeg, so the binary lands at /opt/bin/ffmpeg. The static ffmpeg
# zips to ~65 MB, over Lambda's 50 MB direct-upload limit, so it goes through S3: the
# recordings bucket, under artifacts/ (outside the recordings/ prefix the functions and the
# retention rules touch).
resource "aws_s3_object" "ffmpeg_layer" {
  bucket      = aws_s3_bucket.recordings.id
  key         = "artifacts/${var.name_prefix}-ffmpeg-layer.zip"
  source      = var.ffmpeg_layer_zip
  source_hash = filebase64sha256(var.ffmpeg_layer_zip)
  kms_key_id  = aws_kms_key.main.arn

  depends_on = [aws_s3_bucket_server_side_encryption_configuration.recordings]
}

resource "aws_lambda_layer_version" "ffmpeg" {
  layer_name               = "${var.name_prefix}-ffmpeg"
  description              = "Static ffmpeg (infra/ffmpeg pinned build) at /opt/bin/ffmpeg"
  s3_bucket                = aws_s3_object.ffmpeg_layer.bucket
  s3_key                   = aws_s3_object.ffmpeg_layer.key
  source_code_hash         = filebase64sha256(var.ffmpeg_layer_zip)
  compatible_runtimes      = ["provided.al2023"]
  compatible_architectures = [var.ffmpeg_layer_architecture]
}

resource "aws_lambda_function" "merge" {
  #checkov:skip=CKV_AWS_116:Driven by an SQS event source mapping; failed jobs go to the queue's own dead-letter queue (redrive policy), which a function DLQ would not see.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the cargo lambda build does not produce; the zip hash is tracked by source_code_hash.
  function_name    = local.function_names.merge
  description      = "screenrec merge worker (ffmpeg)"
  role             = aws_iam_role.fn["merge"].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = var.merge_zip
  source_code_hash = filebase64sha256(var.merge_zip)
  memory_size      = var.merge_memory_mb
  timeout          = local.merge_timeout_secs
  layers           = [aws_lambda_layer_version.ffmpeg.arn]
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = var.reserved_concurrency.merge

  ephemeral_storage {
    size = var.merge_ephemeral_storage_mb
  }

  environment {
    variables = merge(local.common_env, {
      STORAGE                   = "s3"
      S3_BUCKET                 = aws_s3_bucket.recordings.bucket
      FFMPEG_PATH               = "/opt/bin/ffmpeg"
      MERGE_WORK_DIR            = "/tmp"
      APIGW_MANAGEMENT_ENDPOINT = local.apigw_management_endpoint
    })
  }

  tracing_config {
    mode = "Active"
  }

  vpc_config {
    subnet_ids         = local.vpc_subnet_ids
    security_group_ids = local.vpc_security_group_ids
  }

  lifecycle {
    precondition {
      condition     = var.lambda_architecture == var.ffmpeg_layer_architecture
      error_message = "lambda_architecture must equal ffmpeg_layer_architecture: the merge function runs the layer's ffmpeg binary."
    }
  }

  depends_on = [aws_cloudwatch_log_group.fn, aws_iam_role_policy.merge]
}
