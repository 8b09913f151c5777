# Object keys: chunks/{id}/{index:08} (uploaded chunks, under their own prefix),
# recordings/{id}/manifest.json and recordings/{id}/output.{webm|mkv|mp4}, active/{id} (a
# marker per unfinished recording); artifacts/ holds the ffmpeg layer zip. Browsers PUT chunks
# and GET outputs through presigned URLs, so the bucket stays private.
resource "aws_s3_bucket" "recordings" {
  #checkov:skip=CKV_AWS_18:Server access logging would need a second bucket; object-level auditing belongs to CloudTrail data events at the account level.
  #checkov:skip=CKV_AWS_21:Chunks are transient and recordings are deleted by the sweeper after retention_days; versioning would keep every deleted object and defeat both.
  #checkov:skip=CKV_AWS_144:Cross-region replication needs versioning, which this bucket does not keep (CKV_AWS_21).
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

# Lifecycle is the second line of defence behind the sweeper (sweep.tf), never the owner of a
# recording: the manifest under recordings/ is the durable record Redis state is rebuilt from,
# and active/ is how the sweeper finds unfinished recordings, so no rule expires either.
# Removing recordings is retention_days' job, done by the sweeper with all their state.
resource "aws_s3_bucket_lifecycle_configuration" "recordings" {
  bucket = aws_s3_bucket.recordings.id

  # The sweeper aborts uploads left for a day too; this catches what it cannot (an upload
  # outside recordings/, a sweep that keeps failing). Aborting deletes no object.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Chunks: chunks/{id}/{index:08}. The merge deletes a recording's chunks once merged
  # (KEEP_CHUNKS=false) and the sweeper those of no recording; this rule removes the rest (a
  # failed merge's, KEEP_CHUNKS=true), so they cost storage for a bounded time. It counts from
  # each chunk's upload, so it must outlast a recording still being made or not yet abandoned.
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

  lifecycle {
    # An hour past abandon_after_secs for the sweep to stop the recording and the merge to
    # read its chunks, before the first of them can expire.
    precondition {
      condition     = var.abandon_after_secs + 3600 <= var.chunk_retention_days * 86400
      error_message = "chunk_retention_days must exceed abandon_after_secs by an hour or more: an abandoned recording's chunks would expire before the sweeper merges them."
    }
  }
}
