# Alarms: failed merges (DLQ not empty, merge function errors), webhook deliveries the merge
# function could not handle (their DLQ not empty, only with webhooks) and API 5xx responses.

locals {
  # Every alarm fires on any non-zero value over five minutes; they differ only in the metric.
  alarms = {
    merge-dlq-not-empty = {
      description = "Merge jobs failed ${var.merge_max_receive_count} times and are in the dead-letter queue."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.merge_dlq.name }
      statistic   = "Maximum"
    }
    merge-errors = {
      description = "The merge function returned errors."
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.fn["merge"].function_name }
      statistic   = "Sum"
    }
    ws-errors = {
      description = "The ws function returned errors."
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.fn["ws"].function_name }
      statistic   = "Sum"
    }
    http-api-5xx = {
      description = "The HTTP API answered with 5xx responses."
      namespace   = "AWS/ApiGateway"
      metric      = "5xx"
      dimensions  = { ApiId = aws_apigatewayv2_api.http.id, Stage = aws_apigatewayv2_stage.http.name }
      statistic   = "Sum"
    }
  }

  # Only with webhooks (webhooks.tf). Not an endpoint failing (the app retries those, then logs
  # them as dead-lettered) but a message the merge function could not handle (its retry could
  # not be queued) local.webhook_max_receive_count times.
  webhook_alarms = local.webhooks_enabled ? {
    webhooks-dlq-not-empty = {
      description = "Webhook deliveries the merge function failed to handle ${local.webhook_max_receive_count} times are in the webhook dead-letter queue."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = aws_sqs_queue.webhooks_dlq[0].name }
      statistic   = "Maximum"
    }
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = merge(local.alarms, local.webhook_alarms)

  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_topic_arns
  ok_actions          = var.alarm_topic_arns
}

# WebSocket API access logs need the account-level API Gateway CloudWatch role (one per
# account and region; HTTP APIs do not). Leave manage_apigateway_account off when another
# stack already sets it.
data "aws_iam_policy_document" "apigateway_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "apigateway_cloudwatch" {
  count = var.manage_apigateway_account ? 1 : 0

  name               = "${var.name_prefix}-apigateway-cloudwatch"
  assume_role_policy = data.aws_iam_policy_document.apigateway_assume.json
}

resource "aws_iam_role_policy_attachment" "apigateway_cloudwatch" {
  count = var.manage_apigateway_account ? 1 : 0

  role       = aws_iam_role.apigateway_cloudwatch[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count = var.manage_apigateway_account ? 1 : 0

  cloudwatch_role_arn = aws_iam_role.apigateway_cloudwatch[0].arn

  depends_on = [aws_iam_role_policy_attachment.apigateway_cloudwatch]
}
