# Redis/Valkey for coordination and notifications. Created here (ElastiCache, in
# var.subnet_ids, reachable only from the functions' security group) when var.redis_url is
# empty; otherwise the functions use var.redis_url and run outside any VPC.

data "aws_subnet" "first" {
  count = local.create_redis ? 1 : 0

  id = try(var.subnet_ids[0], "")

  lifecycle {
    precondition {
      condition     = length(var.subnet_ids) >= 2
      error_message = "Creating Redis (redis_url empty) needs at least two subnet_ids in different availability zones."
    }
  }
}

resource "aws_security_group" "lambda" {
  count = local.create_redis ? 1 : 0

  name        = "${var.name_prefix}-lambda"
  description = "screenrec Lambda functions: outbound to Redis and AWS APIs only"
  vpc_id      = data.aws_subnet.first[0].vpc_id
}

resource "aws_security_group" "redis" {
  count = local.create_redis ? 1 : 0

  name        = "${var.name_prefix}-redis"
  description = "screenrec Redis: 6379 from the Lambda functions only"
  vpc_id      = data.aws_subnet.first[0].vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_lambda" {
  count = local.create_redis ? 1 : 0

  security_group_id            = aws_security_group.redis[0].id
  description                  = "Redis from the screenrec functions"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.lambda[0].id
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_redis" {
  count = local.create_redis ? 1 : 0

  security_group_id            = aws_security_group.lambda[0].id
  description                  = "Redis"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis[0].id
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_https" {
  count = local.create_redis ? 1 : 0

  security_group_id = aws_security_group.lambda[0].id
  description       = "HTTPS to AWS APIs (S3, SQS, execute-api) through NAT or VPC endpoints"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_elasticache_subnet_group" "redis" {
  count = local.create_redis ? 1 : 0

  name       = "${var.name_prefix}-redis"
  subnet_ids = var.subnet_ids
}

resource "random_password" "redis_auth" {
  count = local.create_redis ? 1 : 0

  # ElastiCache AUTH tokens: 16-128 printable characters; letters and digits only keep the
  # token safe inside the rediss:// URL.
  length  = 64
  special = false
}

resource "aws_elasticache_replication_group" "redis" {
  count = local.create_redis ? 1 : 0

  replication_group_id = "${var.name_prefix}-redis"
  description          = "screenrec coordination and notifications"
  engine               = var.redis_engine
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = 6379
  num_cache_clusters   = var.redis_node_count

  automatic_failover_enabled = true
  multi_az_enabled           = true

  subnet_group_name  = aws_elasticache_subnet_group.redis[0].name
  security_group_ids = [aws_security_group.redis[0].id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth[0].result

  snapshot_retention_limit   = 1
  auto_minor_version_upgrade = true
  apply_immediately          = false
}
