data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.name_prefix}-recordings-${local.account_id}"

  # Redis: created here (in the VPC) unless an external URL is given. Whether one is given is
  # no secret, but redis_url is sensitive and so would this be, and count/for_each refuse
  # sensitive values ("Invalid for_each argument" on every plan).
  create_redis = nonsensitive(var.redis_url == "")
  redis_url = (local.create_redis
    ? "rediss://:${random_password.redis_auth[0].result}@${aws_elasticache_replication_group.redis[0].primary_endpoint_address}:6379"
    : var.redis_url
  )

  function_names = {
    api   = "${var.name_prefix}-api"
    ws    = "${var.name_prefix}-ws"
    merge = "${var.name_prefix}-merge"
  }

  # Where the functions post WebSocket frames (API Gateway Management API).
  apigw_management_endpoint = "https://${aws_apigatewayv2_api.ws.id}.execute-api.${local.region}.amazonaws.com/${var.ws_stage_name}"
  ws_connections_arn        = "${aws_apigatewayv2_api.ws.execution_arn}/${var.ws_stage_name}/POST/@connections/*"
}

# One customer-managed key for the bucket, the log groups, Lambda environment variables and
# ElastiCache at rest.
resource "aws_kms_key" "main" {
  description             = "${var.name_prefix}: recordings bucket, logs, Lambda environment, ElastiCache"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt",
          "kms:Decrypt",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.main.key_id
}
