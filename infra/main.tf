# Storage and locks for durable_state: an S3 bucket for snapshots, a DynamoDB
# table for leases (and for DynamoDBStorage's snapshots, if used), and a
# least-privilege IAM policy for the processes that run persisted actors.

data "aws_region" "current" {}

locals {
  policy_name = coalesce(var.policy_name, "${var.bucket_name}-durable-state")

  # Exactly the API calls durable_state makes (tests/test_infra.py derives the
  # list from durable_state/storage/s3.py, durable_state/storage/dynamodb.py
  # and durable_state/locks/dynamodb.py and fails when they differ):
  #   S3Storage: GetObject (read), HeadObject (exists; authorised as
  #   s3:GetObject), PutObject (write), DeleteObject (delete) and
  #   ListObjectsV2 (list; authorised as s3:ListBucket).
  #   DynamoDBLockManager: UpdateItem (acquire, renew, release) and GetItem.
  #   DynamoDBStorage: GetItem (read, exists), UpdateItem (write, add a due
  #   entry), DeleteItem (delete, remove a due entry), Query on the due index
  #   (list_due) and Scan (list, an administrative call); values too large
  #   for an item go through S3Storage's calls on the bucket.
  # The create_table() helpers are for development: the table comes from
  # here, so CreateTable, UpdateTable and UpdateTimeToLive are not granted.
  s3_object_actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
  s3_bucket_actions = ["s3:ListBucket"]
  dynamodb_actions = [
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
  ]
  kms_actions = ["kms:Decrypt", "kms:GenerateDataKey"]

  # DynamoDBStorage's due index (durable_state/_dynamodb.py): a sparse GSI
  # over due entries only, read with dueAt <= now in ascending order.
  due_index_name = "dueIndex"

  # Listing is limited to the prefix with StringLike, not StringLikeIfExists:
  # IfExists also allows a ListObjectsV2 that sends no prefix at all, i.e. a
  # listing of the whole bucket. S3Storage.list always sends Prefix
  # (tests/test_infra.py checks every call site). With an empty prefix the
  # whole bucket is the snapshots' anyway and the statement has no condition.
  list_statement = {
    Sid      = "ListSnapshots"
    Effect   = "Allow"
    Action   = local.s3_bucket_actions
    Resource = aws_s3_bucket.this.arn
  }

  policy_statements = concat(
    [
      {
        Sid      = "Snapshots"
        Effect   = "Allow"
        Action   = local.s3_object_actions
        Resource = "${aws_s3_bucket.this.arn}/${var.prefix}*"
      },
    ],
    var.prefix == "" ? [local.list_statement] : [],
    var.prefix == "" ? [] : [
      merge(local.list_statement, {
        Condition = {
          StringLike = { "s3:prefix" = ["${var.prefix}*"] }
        }
      }),
    ],
    [
      {
        Sid    = "Leases"
        Effect = "Allow"
        Action = local.dynamodb_actions
        Resource = [
          aws_dynamodb_table.locks.arn,
          "${aws_dynamodb_table.locks.arn}/index/${local.due_index_name}",
        ]
      },
    ],
    var.kms_key_arn == null ? [] : [
      {
        Sid      = "EncryptionKey"
        Effect   = "Allow"
        Action   = local.kms_actions
        Resource = var.kms_key_arn
        Condition = {
          StringEquals = {
            "kms:ViaService" = [
              "s3.${data.aws_region.current.name}.amazonaws.com",
              "dynamodb.${data.aws_region.current.name}.amazonaws.com",
            ]
          }
        }
      },
    ],
  )
}

# --------------------------------------------------------------------------- #
# Snapshots
# --------------------------------------------------------------------------- #

resource "aws_s3_bucket" "this" {
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

# Every save writes a new version: a bad deploy can be rolled back to any
# state of the last noncurrent_version_expiration_days days.
resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # One data key per bucket instead of one KMS request per object.
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "this" {
  count = var.require_tls ? 1 : 0

  bucket = aws_s3_bucket.this.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })

  # S3 refuses a bucket policy while the public access block is being set.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "expire-old-snapshot-versions"
    status = "Enabled"

    filter {
      prefix = var.prefix
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    # A deleted actor leaves a delete marker; remove it once its versions are gone.
    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Lifecycle rules on a bucket that is not versioned yet would not see versions.
  depends_on = [aws_s3_bucket_versioning.this]
}

# --------------------------------------------------------------------------- #
# Leases
# --------------------------------------------------------------------------- #

# durable-x-state's table: hash key "id" (S), TTL on "expireAt". TTL only
# collects garbage; the library never relies on it to expire a lease, and only
# lease items carry expireAt. DynamoDBStorage keeps snapshots ("state#..."
# items) and due entries ("due#..." items) in the same table; the due entries
# alone carry the keys of the dueIndex GSI.
resource "aws_dynamodb_table" "locks" {
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = var.deletion_protection
  tags                        = var.tags

  attribute {
    name = "id"
    type = "S"
  }

  attribute {
    name = "dueShard"
    type = "S"
  }

  attribute {
    name = "dueAt"
    type = "N"
  }

  global_secondary_index {
    name            = local.due_index_name
    hash_key        = "dueShard"
    range_key       = "dueAt"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "expireAt"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  dynamic "server_side_encryption" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      enabled     = true
      kms_key_arn = server_side_encryption.value
    }
  }
}

# --------------------------------------------------------------------------- #
# Access
# --------------------------------------------------------------------------- #

resource "aws_iam_policy" "this" {
  name        = local.policy_name
  description = "durable_state: snapshots in s3://${var.bucket_name}/${var.prefix}, leases and DynamoDB snapshots in ${var.table_name}"
  policy      = jsonencode({ Version = "2012-10-17", Statement = local.policy_statements })
  tags        = var.tags
}

# --------------------------------------------------------------------------- #
# The waker (optional): a schedule rule that invokes a Lambda function running
# make_schedule_handler(system). The function's role needs the policy above
# (it reads the due index, loads, saves and removes index entries).
# --------------------------------------------------------------------------- #

resource "aws_cloudwatch_event_rule" "waker" {
  count               = var.waker_function_arn == null ? 0 : 1
  name                = "${local.policy_name}-waker"
  description         = "durable_state: fire the timers that are due (${var.waker_schedule})"
  schedule_expression = var.waker_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "waker" {
  count = var.waker_function_arn == null ? 0 : 1
  rule  = aws_cloudwatch_event_rule.waker[0].name
  arn   = var.waker_function_arn
}

resource "aws_lambda_permission" "waker" {
  count         = var.waker_function_arn == null ? 0 : 1
  statement_id  = "durable-state-waker"
  action        = "lambda:InvokeFunction"
  function_name = var.waker_function_arn
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.waker[0].arn
}
