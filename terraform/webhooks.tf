# Webhooks (WEBHOOK_*): the app's server hears of every change in a recording's life. A server
# keeps pending deliveries in Redis and its workers poll them; here no process runs between
# requests, so deliveries wait in an SQS queue instead (WEBHOOK_QUEUE_URL). A function that
# changes a recording sends one message per delivery (SendMessage, delayed until the attempt
# is due, at most SQS's 900 s; a longer wait comes back early and is sent on again), and the
# merge function, through a second event source mapping on the same handler (it tells a
# delivery from a merge job by the message body), makes the attempt. A retry is a new delayed
# message, so the app's backoff never depends on this queue's visibility timeout. A message
# whose handling failed (its retry could not be sent) is reported as a batch item failure, so
# SQS hands it out again, and after local.webhook_max_receive_count deliveries moves it to the
# dead-letter queue.
#
# All of it exists only when an endpoint is configured (webhook_url or webhook_tenant_urls).
# Without one the functions queue nothing, so an always-present queue would be a mapping
# polling an empty queue on the merge function, a grant in three roles and an alarm, all for
# nothing; the price is count and [0] here and dynamic statements in iam.tf. Removing every
# endpoint destroys the queue with whatever deliveries still wait in it.

locals {
  webhooks_enabled = var.webhook_url != "" || var.webhook_tenant_urls != ""

  # Deliveries of one message before SQS gives up on it. Only a failure to handle the message
  # (to send its retry, or the whole batch failing) counts; an endpoint's failures are retried
  # by new messages for WEBHOOK_RETRY_FOR_SECS, and then dead-lettered by the app (the log).
  webhook_max_receive_count = 5

  # Every function may emit events (api: created, stopped; merge: ready, failed, and the sweep's
  # abandoned and deleted; ws builds the same recording service as api): the same settings for
  # all three.
  # An empty one is left out (the code reads an empty variable as unset anyway), so the
  # functions' environment shows what is configured and nothing else; WEBHOOK_ALLOW_PRIVATE
  # only when true, false being the code's default. WEBHOOK_SECRET makes this local (and the
  # functions' environment, as REDIS_URL already does) sensitive.
  webhook_env = local.webhooks_enabled ? merge(
    { WEBHOOK_QUEUE_URL = aws_sqs_queue.webhooks[0].url },
    var.webhook_secret == "" ? {} : { WEBHOOK_SECRET = var.webhook_secret },
    var.webhook_url == "" ? {} : { WEBHOOK_URL = var.webhook_url },
    var.webhook_tenant_urls == "" ? {} : { WEBHOOK_TENANT_URLS = var.webhook_tenant_urls },
    var.webhook_allow_private ? { WEBHOOK_ALLOW_PRIVATE = "true" } : {},
  ) : {}

  # The endpoints, and the ports they listen on: in the VPC (Redis created here) the functions'
  # security group lets out HTTPS on 443 alone, so another port (http://, https://host:8443)
  # needs its own egress rule below. The validations in variables.tf have checked the URLs'
  # shape before any of this is evaluated.
  webhook_urls = compact(concat(
    [var.webhook_url],
    [for entry in split(",", var.webhook_tenant_urls) : try(trimspace(regex("=(.*)$", entry)[0]), "")],
  ))
  webhook_ports = toset([
    for url in local.webhook_urls :
    coalesce(
      regex("^(https?)://(?:[^@/?#]*@)?(\\[[^\\]]*\\]|[^:/?#]*)(?::([0-9]+))?", url)[2],
      startswith(url, "https://") ? "443" : "80",
    )
  ])
}

resource "aws_sqs_queue" "webhooks_dlq" {
  count = local.webhooks_enabled ? 1 : 0

  name = "${var.name_prefix}-webhooks-dlq"
  # A message keeps its first enqueue time in the DLQ, so this must outlast the queue's 4 days.
  message_retention_seconds = 1209600 # 14 days, the maximum
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "webhooks" {
  count = local.webhooks_enabled ? 1 : 0

  name = "${var.name_prefix}-webhooks"
  # The consumer is the merge function (900 s timeout): Lambda refuses a mapping on a queue whose
  # visibility timeout is below the function's, and AWS recommends 6x it. It is only how long a
  # message whose handling failed waits before it is handed out again; retries after an
  # endpoint's failure are new messages with their own delay.
  visibility_timeout_seconds = 6 * local.merge_timeout_secs
  # Counted from the send, the delay (at most 900 s) included: 4 days leave room for a consumer
  # held up (throttled merge function, an outage) without losing deliveries.
  message_retention_seconds = 345600 # 4 days
  receive_wait_time_seconds = 20
  # Delays are set per message (SendMessage's DelaySeconds), so the queue's own stays 0.
  delay_seconds           = 0
  sqs_managed_sse_enabled = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.webhooks_dlq[0].arn
    maxReceiveCount     = local.webhook_max_receive_count
  })

  lifecycle {
    # Here rather than in variable validation: a validation may refer to its own variable only
    # before Terraform 1.9, and versions.tf allows 1.5. Whether a secret is set is no secret.
    # The functions refuse to start with a URL and no secret, so this fails the plan instead.
    precondition {
      condition     = nonsensitive(var.webhook_secret != "")
      error_message = "webhook_url or webhook_tenant_urls is set, so webhook_secret is required: whsec_ and the base64 of at least 24 random bytes, for instance \"whsec_$(openssl rand -base64 32)\"."
    }
  }
}

resource "aws_sqs_queue_redrive_allow_policy" "webhooks_dlq" {
  count = local.webhooks_enabled ? 1 : 0

  queue_url = aws_sqs_queue.webhooks_dlq[0].id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.webhooks[0].arn]
  })
}

resource "aws_lambda_event_source_mapping" "webhooks" {
  count = local.webhooks_enabled ? 1 : 0

  event_source_arn = aws_sqs_queue.webhooks[0].arn
  function_name    = aws_lambda_function.fn["merge"].arn
  # The function makes a batch's attempts one after another, each up to WEBHOOK_TIMEOUT_SECS
  # (10 s, at most 60), and a batch not answered within the 900 s timeout fails as a whole. 5
  # keeps even 5 x 60 s far inside it and one slow endpoint from holding up many deliveries,
  # at a fifth of the invocations of one message each.
  batch_size = 5
  # Only the messages whose handling failed come back, not the whole batch (the merge queue's
  # mapping does the same).
  function_response_types = ["ReportBatchItemFailures"]

  # Its own cap, so deliveries cannot take every merge function instance from the merges.
  scaling_config {
    maximum_concurrency = var.webhook_max_concurrency
  }

  # The role must be able to read the queue before the mapping is created.
  depends_on = [aws_iam_role_policy.fn]
}

# In the VPC, egress to the endpoints' ports other than 443 (lambda_to_https in redis.tf covers
# that one). A public endpoint is reached through the subnets' NAT gateway either way.
resource "aws_vpc_security_group_egress_rule" "lambda_to_webhooks" {
  for_each = local.create_redis ? setsubtract(local.webhook_ports, ["443"]) : toset([])

  security_group_id = aws_security_group.lambda[0].id
  description       = "Webhook endpoints on port ${each.value}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  cidr_ipv4         = "0.0.0.0/0"
}
