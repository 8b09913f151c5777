variable "region" {
  description = "AWS region to deploy into, e.g. eu-west-1."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. us-east-1 or eu-central-2."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (Lambda functions, queues, APIs, log groups)."
  type        = string
  default     = "screenrec"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,28}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-30 characters of lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}

variable "bucket_name" {
  description = "Name of the recordings bucket. Empty: \"<name_prefix>-recordings-<account id>\"."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be empty or a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)."
  }
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the HTTP API and to PUT/GET presigned S3 URLs."
  type        = list(string)

  validation {
    condition     = length(var.cors_allowed_origins) > 0
    error_message = "cors_allowed_origins must list at least one origin."
  }

  validation {
    condition = alltrue([
      for o in var.cors_allowed_origins :
      can(regex("^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|http://localhost(:[0-9]{1,5})?)$", o))
    ])
    error_message = "Each origin must be https://host[:port] or http://localhost[:port], without a path or trailing slash."
  }
}

variable "chunk_retention_days" {
  description = "Days after which chunk objects (chunks/) are deleted by S3 lifecycle, merged or not: what the merge and the sweeper left (a failed recording's chunks, KEEP_CHUNKS). Must exceed the longest recording plus abandon_after_secs."
  type        = number
  default     = 2

  validation {
    condition     = var.chunk_retention_days >= 1 && floor(var.chunk_retention_days) == var.chunk_retention_days
    error_message = "chunk_retention_days must be a whole number >= 1."
  }
}

# Replaced by retention_days. Declared only so that a tfvars file still setting it fails with
# the way out, rather than being ignored while its recordings are kept for ever.
variable "recording_retention_days" {
  description = "Removed: recordings are deleted by the sweeper after retention_days, no longer by S3 lifecycle. Leave unset."
  type        = number
  default     = null

  validation {
    condition     = var.recording_retention_days == null
    error_message = "recording_retention_days is gone: the sweeper deletes recordings after retention_days (unset keeps them for ever). Set retention_days to the same value instead (the old default was 7)."
  }
}

variable "retention_days" {
  description = "Days after which the sweeper deletes a recording, every object and all its state (RETENTION_DAYS); null keeps recordings for ever."
  type        = number
  default     = null

  validation {
    # A conditional, not ||: older Terraform evaluates both sides of ||, and null >= 1 is an error.
    condition     = var.retention_days == null ? true : (var.retention_days >= 1 && var.retention_days <= 36500 && floor(var.retention_days) == var.retention_days)
    error_message = "retention_days must be null (keep for ever) or a whole number between 1 and 36500."
  }
}

variable "abandon_after_secs" {
  description = "A recording with no chunk and no stop for this many seconds is abandoned by the sweeper (ABANDON_AFTER_SECS): merged or deleted, see abandoned."
  type        = number
  default     = 3600

  validation {
    condition     = var.abandon_after_secs >= 1 && var.abandon_after_secs <= 31536000 && floor(var.abandon_after_secs) == var.abandon_after_secs
    error_message = "abandon_after_secs must be a whole number between 1 and 31536000 (a year)."
  }
}

variable "abandoned" {
  description = "What the sweeper does with an abandoned recording (ABANDONED): merge its chunks from 0 on (marked abandoned), or delete it."
  type        = string
  default     = "merge"

  validation {
    condition     = contains(["merge", "delete"], var.abandoned)
    error_message = "abandoned must be merge or delete."
  }
}

variable "sweep_schedule" {
  description = "EventBridge schedule expression of the sweep the merge function runs (stuck merges queued again, abandoned recordings, retention, stale uploads, orphan chunks)."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate\\(1 (minute|hour|day)\\)|rate\\(([2-9]|[1-9][0-9]+) (minutes|hours|days)\\)|cron\\(.+\\))$", var.sweep_schedule))
    error_message = "sweep_schedule must be an EventBridge schedule expression: rate(1 minute), rate(N minutes|hours|days) or cron(...)."
  }
}

variable "log_retention_days" {
  description = "Retention of the Lambda and API Gateway CloudWatch log groups, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the three Lambda functions; must match the cargo lambda build target (x86_64 or arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "api_zip" {
  description = "Path of the api function's deployment zip (bash scripts/build-lambda)."
  type        = string
  default     = "../target/lambda/api/bootstrap.zip"

  validation {
    condition     = endswith(var.api_zip, ".zip")
    error_message = "api_zip must be the path of a .zip file."
  }
}

variable "ws_zip" {
  description = "Path of the ws function's deployment zip."
  type        = string
  default     = "../target/lambda/ws/bootstrap.zip"

  validation {
    condition     = endswith(var.ws_zip, ".zip")
    error_message = "ws_zip must be the path of a .zip file."
  }
}

variable "merge_zip" {
  description = "Path of the merge function's deployment zip."
  type        = string
  default     = "../target/lambda/merge/bootstrap.zip"

  validation {
    condition     = endswith(var.merge_zip, ".zip")
    error_message = "merge_zip must be the path of a .zip file."
  }
}

variable "ffmpeg_layer_zip" {
  description = "Path of the ffmpeg layer zip; it must contain bin/ffmpeg so the binary lands at /opt/bin/ffmpeg."
  type        = string
  default     = "../target/lambda/ffmpeg-layer.zip"

  validation {
    condition     = endswith(var.ffmpeg_layer_zip, ".zip")
    error_message = "ffmpeg_layer_zip must be the path of a .zip file."
  }
}

variable "ffmpeg_layer_architecture" {
  description = "Instruction set of the ffmpeg binary in the layer (the pinned build in infra/ffmpeg is x86_64); must equal lambda_architecture."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.ffmpeg_layer_architecture)
    error_message = "ffmpeg_layer_architecture must be x86_64 or arm64."
  }
}

variable "api_memory_mb" {
  description = "Memory of the api function in MB."
  type        = number
  default     = 512

  validation {
    condition     = var.api_memory_mb >= 128 && var.api_memory_mb <= 10240
    error_message = "api_memory_mb must be between 128 and 10240."
  }
}

variable "ws_memory_mb" {
  description = "Memory of the ws function in MB."
  type        = number
  default     = 256

  validation {
    condition     = var.ws_memory_mb >= 128 && var.ws_memory_mb <= 10240
    error_message = "ws_memory_mb must be between 128 and 10240."
  }
}

variable "merge_memory_mb" {
  description = "Memory of the merge function in MB (CPU scales with it; ffmpeg remuxing is mostly I/O bound)."
  type        = number
  default     = 2048

  validation {
    condition     = var.merge_memory_mb >= 128 && var.merge_memory_mb <= 10240
    error_message = "merge_memory_mb must be between 128 and 10240."
  }
}

variable "merge_ephemeral_storage_mb" {
  description = "Size of the merge function's /tmp in MB: it must hold a recording's chunks plus the merged output."
  type        = number
  default     = 10240

  validation {
    condition     = var.merge_ephemeral_storage_mb >= 512 && var.merge_ephemeral_storage_mb <= 10240
    error_message = "merge_ephemeral_storage_mb must be between 512 and 10240."
  }
}

variable "merge_max_concurrency" {
  description = "Most merge functions the SQS event source mapping runs at once."
  type        = number
  default     = 10

  validation {
    condition     = var.merge_max_concurrency >= 2 && var.merge_max_concurrency <= 1000
    error_message = "merge_max_concurrency must be between 2 and 1000 (the SQS event source mapping limits)."
  }
}

variable "merge_max_receive_count" {
  description = "Deliveries of a merge job before SQS moves it to the dead-letter queue; also the merge function's MERGE_MAX_DELIVERIES."
  type        = number
  default     = 3

  validation {
    condition     = var.merge_max_receive_count >= 1 && var.merge_max_receive_count <= 1000
    error_message = "merge_max_receive_count must be between 1 and 1000."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency per function (keys api, ws, merge); -1 leaves a function on the unreserved account pool."
  type        = object({ api = number, ws = number, merge = number })
  default     = { api = -1, ws = -1, merge = -1 }

  validation {
    condition     = alltrue([for v in values(var.reserved_concurrency) : v == -1 || v >= 0])
    error_message = "Each reserved_concurrency value must be -1 (unreserved) or >= 0."
  }
}

variable "presign_ttl_secs" {
  description = "Lifetime of presigned chunk upload and download URLs, in seconds (PRESIGN_TTL_SECS)."
  type        = number
  default     = 900

  validation {
    condition     = var.presign_ttl_secs >= 60 && var.presign_ttl_secs <= 604800
    error_message = "presign_ttl_secs must be between 60 and 604800 (the SigV4 maximum of 7 days)."
  }
}

variable "max_chunk_bytes" {
  description = "Largest accepted chunk in bytes (MAX_CHUNK_BYTES)."
  type        = number
  default     = 16777216

  validation {
    condition     = var.max_chunk_bytes >= 1024 && var.max_chunk_bytes <= 5368709120
    error_message = "max_chunk_bytes must be between 1 KiB and 5 GiB (the S3 single PUT limit)."
  }
}

variable "redis_prefix" {
  description = "Prefix of every Redis key (REDIS_PREFIX), so several deployments can share one server."
  type        = string
  default     = "screenrec:"

  validation {
    condition     = can(regex("^[A-Za-z0-9:_.-]{1,64}$", var.redis_prefix))
    error_message = "redis_prefix must be 1-64 characters of letters, digits, ':', '_', '.' and '-'."
  }
}

variable "redis_url" {
  description = "URL of an existing Redis/Valkey server (rediss:// recommended). Empty: create an ElastiCache replication group in subnet_ids and run the functions in that VPC."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.redis_url == "" || can(regex("^rediss?://", var.redis_url))
    error_message = "redis_url must be empty or start with redis:// or rediss://."
  }
}

variable "subnet_ids" {
  description = "Private subnets for ElastiCache and the Lambda functions when redis_url is empty. They need a NAT gateway or VPC endpoints (S3, SQS, execute-api) for the functions to reach AWS APIs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "Each subnet_ids entry must be a subnet id (subnet-xxxxxxxx)."
  }
}

variable "redis_engine" {
  description = "ElastiCache engine of the created replication group: valkey or redis."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.redis_engine)
    error_message = "redis_engine must be valkey or redis."
  }
}

variable "redis_engine_version" {
  description = "Engine version of the created replication group (e.g. 7.2 for valkey, 7.1 for redis)."
  type        = string
  default     = "7.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.redis_engine_version))
    error_message = "redis_engine_version must be MAJOR.MINOR, e.g. 7.2."
  }
}

variable "redis_node_type" {
  description = "Node type of the created replication group."
  type        = string
  default     = "cache.t4g.micro"

  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.redis_node_type))
    error_message = "redis_node_type must be an ElastiCache node type such as cache.t4g.micro."
  }
}

variable "redis_node_count" {
  description = "Nodes (primary plus replicas) in the created replication group; at least 2, as automatic failover and Multi-AZ are on."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_node_count >= 2 && var.redis_node_count <= 6 && floor(var.redis_node_count) == var.redis_node_count
    error_message = "redis_node_count must be a whole number between 2 and 6 (automatic failover needs a replica)."
  }
}

variable "ws_stage_name" {
  description = "Stage name of the WebSocket API (part of the wss:// URL and of the management endpoint)."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", var.ws_stage_name))
    error_message = "ws_stage_name must be 1-128 letters, digits, '_' or '-'."
  }
}

variable "api_throttle_rate_limit" {
  description = "Steady-state requests per second allowed by the HTTP API stage."
  type        = number
  default     = 200

  validation {
    condition     = var.api_throttle_rate_limit > 0
    error_message = "api_throttle_rate_limit must be positive."
  }
}

variable "api_throttle_burst_limit" {
  description = "Burst of requests allowed by the HTTP API stage."
  type        = number
  default     = 400

  validation {
    condition     = var.api_throttle_burst_limit > 0 && floor(var.api_throttle_burst_limit) == var.api_throttle_burst_limit
    error_message = "api_throttle_burst_limit must be a positive whole number."
  }
}

variable "alarm_topic_arns" {
  description = "SNS topic ARNs notified by the CloudWatch alarms; empty: alarms only change state."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alarm_topic_arns : can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+(\\.fifo)?$", a))])
    error_message = "Each alarm_topic_arns entry must be an SNS topic ARN."
  }
}

variable "manage_apigateway_account" {
  description = "Set the account-level API Gateway CloudWatch Logs role (needed for WebSocket access logs). Turn off if another stack in this account and region manages aws_api_gateway_account."
  type        = bool
  default     = true
}

# --- webhooks (webhooks.tf) -----------------------------------------------------------------
# An endpoint (webhook_url or webhook_tenant_urls) creates the webhook queue and wires it to all
# three functions; none leaves webhooks off and creates nothing. Beyond the shape checked here,
# the functions check the URLs at start (and refuse to start on a bad one), so a plan that
# passes these validations can still deploy functions that fail: mind WEBHOOK_ALLOW_PRIVATE.

variable "webhook_url" {
  description = "The app's webhook endpoint (WEBHOOK_URL): every change in a recording's life is POSTed there, signed with webhook_secret. Empty (and webhook_tenant_urls empty): no webhooks."
  type        = string
  default     = ""

  validation {
    condition     = var.webhook_url == "" || can(regex("^https?://[^/?#\\s]+([/?#]\\S*)?$", var.webhook_url))
    error_message = "webhook_url must be empty or an http:// or https:// URL without spaces."
  }
}

variable "webhook_tenant_urls" {
  description = "Tenants' own webhook endpoints (WEBHOOK_TENANT_URLS): comma-separated tenant=url, e.g. \"acme=https://acme.example.com/hooks,globex=https://globex.example.com/hooks\"; a tenant not listed gets webhook_url. Empty: none."
  type        = string
  default     = ""

  validation {
    condition = alltrue([
      for entry in split(",", var.webhook_tenant_urls) :
      trimspace(entry) == "" || can(regex("^\\s*[^=\\s][^=]*=\\s*https?://[^/?#\\s]+([/?#]\\S*)?\\s*$", entry))
    ])
    error_message = "webhook_tenant_urls must be empty or comma-separated tenant=url entries, each url http:// or https:// (a comma cannot appear inside a url)."
  }
}

variable "webhook_secret" {
  description = "Signing secret of the webhooks (WEBHOOK_SECRET): whsec_ and the standard, padded base64 of at least 24 random bytes, e.g. \"whsec_$(openssl rand -base64 32)\". Required with webhook_url or webhook_tenant_urls. It lands in the functions' (KMS-encrypted) environment and in the Terraform state; pass it as TF_VAR_webhook_secret rather than in a file."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.webhook_secret == "" || startswith(var.webhook_secret, "whsec_")
    error_message = "webhook_secret must start with whsec_ (followed by the base64 of the key), e.g. \"whsec_$(openssl rand -base64 32)\"."
  }

  validation {
    # What the functions accept (WebhookSecret::parse): base64 with its padding, decoding to 24
    # bytes or more (3 per 4 characters, less one per "="). A conditional, not ||: older
    # Terraform evaluates both sides of ||.
    condition = var.webhook_secret == "" ? true : (
      can(regex("^whsec_([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$", var.webhook_secret))
      && length(trimprefix(var.webhook_secret, "whsec_")) / 4 * 3 - length(regex("=*$", var.webhook_secret)) >= 24
    )
    error_message = "After whsec_, webhook_secret must be standard base64 with its = padding, of a key of at least 24 bytes (32 characters or more), e.g. \"whsec_$(openssl rand -base64 32)\"."
  }
}

variable "webhook_allow_private" {
  description = "Let webhook deliveries go to loopback, link-local, private and other non-public addresses (WEBHOOK_ALLOW_PRIVATE), for a receiver on your own network. Off, such an address is refused, whether in the URL or what its name resolves to."
  type        = bool
  default     = false
}

variable "webhook_max_concurrency" {
  description = "Most merge function instances the webhook queue's event source mapping runs at once; they come out of the merge function's concurrency (reserved_concurrency.merge when set), next to merge_max_concurrency."
  type        = number
  default     = 5

  validation {
    condition     = var.webhook_max_concurrency >= 2 && var.webhook_max_concurrency <= 1000 && floor(var.webhook_max_concurrency) == var.webhook_max_concurrency
    error_message = "webhook_max_concurrency must be a whole number between 2 and 1000 (the SQS event source mapping limits)."
  }
}
