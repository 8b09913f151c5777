# Object keys: chunks/{id}/{index:08} (uploaded chunks, under their own prefix),
# recordings/{id}/manifest.json and recordings/{id}/output.{webm|mkv|mp4}; artifacts/ holds
# the ffmpeg layer zip. Browsers PUT chunks and GET outputs through presigned URLs, so the
# bucket stays private.
resource "aws_s3_bucket" "recordings" {
  #checkov:skip=CKV_AWS_18:Server access logging would need a second bucket; object-level auditing belongs to CloudTrail data events at the account level.
  #checkov:skip=CKV_AWS_21:Recordings are transient (lifecycle-expired); versioning would keep every deleted chunk and defeat the retention rules.
  #checkov:skip=CKV_AWS_144:Cross-region replication is not wanted for short-lived recordings.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications: merges are queued by the api function through SQS.
  bucket        = local.bucket_name
  force_destroy = false
}

resource "aws_s3_bucket_public_access_block" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

# TLS only.
resource "aws_s3_bucket_policy" "recordings" {
  bucket = aws_s3_bucket.recordings.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.recordings]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    resources = [
      aws_s3_bucket.recordings.arn,
      "${aws_s3_bucket.recordings.arn}/*",
    ]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_cors_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  cors_rule {
    allowed_methods = ["PUT", "GET", "HEAD"]
    allowed_origins = var.cors_allowed_origins
    allowed_headers = ["*"]
    expose_headers  = ["ETag", "Content-Length", "Content-Type"]
    max_age_seconds = 3600
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Chunks: chunks/{id}/{index:08}. The merge deletes a recording's chunks once merged
  # (KEEP_CHUNKS=false); this rule removes the rest (abandoned recordings, failed merges).
  rule {
    id     = "expire-chunks"
    status = "Enabled"

    filter {
      prefix = "chunks/"
    }

    expiration {
      days = var.chunk_retention_days
    }
  }

  # Manifests and merged outputs.
  rule {
    id     = "expire-recordings"
    status = "Enabled"

    filter {
      prefix = "recordings/"
    }

    expiration {
      days = var.recording_retention_days
    }
  }

  lifecycle {
    precondition {
      condition     = var.chunk_retention_days <= var.recording_retention_days
      error_message = "chunk_retention_days must not exceed recording_retention_days."
    }
  }
}
