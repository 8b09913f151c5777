locals {
  merge_timeout_secs = 900

  vpc_subnet_ids         = local.create_redis ? var.subnet_ids : []
  vpc_security_group_ids = local.create_redis ? [aws_security_group.lambda[0].id] : []

  # Every function: coordination through Redis, JSON logs, and events out through the
  # WebSocket API's Management API (each of them publishes: api chunkSaved/recordingState,
  # ws replies and status, merge mergeProgress/recordingReady).
  # The sweep settings too: the sweeper runs in merge, but api and ws report and rebuild the
  # same recordings, so all three read them alike.
  common_env = {
    REDIS_URL                 = local.redis_url
    REDIS_PREFIX              = var.redis_prefix
    LOG_FORMAT                = "json"
    APIGW_MANAGEMENT_ENDPOINT = local.apigw_management_endpoint
    ABANDON_AFTER_SECS        = tostring(var.abandon_after_secs)
    ABANDONED                 = var.abandoned
    # The list the bucket's and the HTTP API's CORS take too.
    CORS_ALLOWED_ORIGINS = join(",", var.cors_allowed_origins)
  }

  # Unset keeps recordings for ever; a Lambda environment value cannot be null.
  retention_env = var.retention_days == null ? {} : { RETENTION_DAYS = tostring(var.retention_days) }

  # What differs between the three functions. Everything else is in aws_lambda_function.fn.
  functions = {
    # The HTTP API behind API Gateway (lambda_http over the axum Router). Refuses to start
    # without MERGE_QUEUE_URL: stop sends the merge job there.
    api = {
      description          = "screenrec HTTP API"
      zip                  = var.api_zip
      reserved_concurrency = var.reserved_concurrency.api
      memory_mb            = var.api_memory_mb
      timeout              = 29 # the HTTP API integration limit is 30 s
      layers               = []
      ephemeral_storage_mb = null
      env = {
        STORAGE          = "s3"
        S3_BUCKET        = aws_s3_bucket.recordings.bucket
        PRESIGN_TTL_SECS = tostring(var.presign_ttl_secs)
        MAX_CHUNK_BYTES  = tostring(var.max_chunk_bytes)
        MERGE_QUEUE_URL  = aws_sqs_queue.merge.url
      }
    }

    # The WebSocket API's $connect / $disconnect / $default. It builds the same recording
    # service as the api function: authorize and status read Redis, and on a miss rebuild the
    # recording from the store, re-queueing a stopped one (so MERGE_QUEUE_URL: without it the
    # job would go to a Redis Stream nothing reads here).
    ws = {
      description          = "screenrec WebSocket routes"
      zip                  = var.ws_zip
      reserved_concurrency = var.reserved_concurrency.ws
      memory_mb            = var.ws_memory_mb
      timeout              = 10
      layers               = []
      ephemeral_storage_mb = null
      env = {
        STORAGE         = "s3"
        S3_BUCKET       = aws_s3_bucket.recordings.bucket
        MERGE_QUEUE_URL = aws_sqs_queue.merge.url
      }
    }

    # SQS-driven ffmpeg merge, and the sweep on the EventBridge schedule (sweep.tf).
    # MERGE_MAX_DELIVERIES equals the queue's maxReceiveCount, so the recording is marked
    # failed on the last delivery before SQS moves the job to the DLQ. MERGE_QUEUE_URL is where
    # the sweep and a rebuild re-queue merges (unset, they would go to a Redis Stream).
    merge = {
      description          = "screenrec merge worker (ffmpeg)"
      zip                  = var.merge_zip
      reserved_concurrency = var.reserved_concurrency.merge
      memory_mb            = var.merge_memory_mb
      timeout              = local.merge_timeout_secs
      layers               = [aws_lambda_layer_version.ffmpeg.arn]
      ephemeral_storage_mb = var.merge_ephemeral_storage_mb
      env = {
        STORAGE              = "s3"
        S3_BUCKET            = aws_s3_bucket.recordings.bucket
        PRESIGN_TTL_SECS     = tostring(var.presign_ttl_secs)
        FFMPEG_PATH          = "/opt/bin/ffmpeg"
        MERGE_WORK_DIR       = "/tmp"
        MERGE_MAX_DELIVERIES = tostring(var.merge_max_receive_count)
        MERGE_QUEUE_URL      = aws_sqs_queue.merge.url
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "fn" {
  for_each = local.function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

# --- the ffmpeg layer (merge) ---------------------------------------------------------------
# The layer zip holds bin/ffmpeg, so the binary lands at /opt/bin/ffmpeg. The static ffmpeg
# zips to ~65 MB, over Lambda's 50 MB direct-upload limit, so it goes through S3: the
# recordings bucket, under artifacts/ (outside the chunks/ and recordings/ prefixes the
# functions and the retention rules touch).
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

# --- the functions: api, ws, merge ----------------------------------------------------------
resource "aws_lambda_function" "fn" {
  #checkov:skip=CKV_AWS_116:api and ws are invoked synchronously by API Gateway (a DLQ only applies to asynchronous invocations); merge is driven by an SQS event source mapping, whose failed jobs go to the queue's own dead-letter queue (redrive policy), which a function DLQ would not see.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the cargo lambda build does not produce; the zip hash is tracked by source_code_hash.
  for_each = local.functions

  function_name    = local.function_names[each.key]
  description      = each.value.description
  role             = aws_iam_role.fn[each.key].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.lambda_architecture]
  filename         = each.value.zip
  source_code_hash = filebase64sha256(each.value.zip)
  memory_size      = each.value.memory_mb
  timeout          = each.value.timeout
  layers           = each.value.layers
  kms_key_arn      = aws_kms_key.main.arn

  reserved_concurrent_executions = each.value.reserved_concurrency

  dynamic "ephemeral_storage" {
    for_each = each.value.ephemeral_storage_mb == null ? [] : [each.value.ephemeral_storage_mb]

    content {
      size = ephemeral_storage.value
    }
  }

  # local.webhook_env (webhooks.tf) is empty unless webhooks are configured. It and
  # local.common_env stay out of local.functions: they hold sensitive values (WEBHOOK_SECRET,
  # REDIS_URL), and for_each refuses a sensitive map.
  environment {
    variables = merge(local.common_env, local.retention_env, local.webhook_env, each.value.env)
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
      condition     = length(each.value.layers) == 0 || var.lambda_architecture == var.ffmpeg_layer_architecture
      error_message = "lambda_architecture must equal ffmpeg_layer_architecture: the merge function runs the layer's ffmpeg binary."
    }
  }

  depends_on = [aws_cloudwatch_log_group.fn, aws_iam_role_policy.fn]
}

# State addresses of the functions before they became one for_each resource.
moved {
  from = aws_lambda_function.api
  to   = aws_lambda_function.fn["api"]
}

moved {
  from = aws_lambda_function.ws
  to   = aws_lambda_function.fn["ws"]
}

moved {
  from = aws_lambda_function.merge
  to   = aws_lambda_function.fn["merge"]
}
