# Merge jobs: the api function sends one message per stopped recording; the merge function
# consumes them one at a time. Failed jobs land in the dead-letter queue after
# var.merge_max_receive_count deliveries; the merge function gets the same number as
# MERGE_MAX_DELIVERIES, so it marks the recording failed on the last delivery.
resource "aws_sqs_queue" "merge_dlq" {
  name                      = "${var.name_prefix}-merge-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "merge" {
  name = "${var.name_prefix}-merge"
  # AWS recommends at least 6x the function timeout for a Lambda event source.
  visibility_timeout_seconds = 6 * local.merge_timeout_secs
  message_retention_seconds  = 345600 # 4 days
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.merge_dlq.arn
    maxReceiveCount     = var.merge_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "merge_dlq" {
  queue_url = aws_sqs_queue.merge_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.merge.arn]
  })
}

resource "aws_lambda_event_source_mapping" "merge" {
  event_source_arn        = aws_sqs_queue.merge.arn
  function_name           = aws_lambda_function.fn["merge"].arn
  batch_size              = 1
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.merge_max_concurrency
  }

  # The role must be able to read the queue before the mapping is created.
  depends_on = [aws_iam_role_policy.fn]
}
