# Plans and applies the module against a mocked AWS provider: no credentials,
# no network. Run with `terraform init && terraform test` in infra/ (see
# infra/README.md); tests/test_infra.py runs it when the provider is installed.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }

  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::orders-state"
    }
  }

  mock_resource "aws_dynamodb_table" {
    defaults = {
      arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders-locks"
    }
  }

  mock_resource "aws_cloudwatch_event_rule" {
    defaults = {
      arn = "arn:aws:events:eu-west-1:123456789012:rule/orders-state-durable-state-waker"
    }
  }

  mock_resource "aws_iam_policy" {
    defaults = {
      arn = "arn:aws:iam::123456789012:policy/orders-state-durable-state"
    }
  }
}

variables {
  bucket_name = "orders-state"
  prefix      = "actors/"
  table_name  = "orders-locks"
}

run "defaults" {
  command = apply

  assert {
    condition     = aws_dynamodb_table.locks.hash_key == "id" && contains(aws_dynamodb_table.locks.attribute, { name = "id", type = "S" })
    error_message = "the lock table must be keyed by id (S), as DynamoDBLockManager and DynamoDBStorage expect"
  }

  assert {
    condition = (
      one(aws_dynamodb_table.locks.global_secondary_index).name == "dueIndex" &&
      one(aws_dynamodb_table.locks.global_secondary_index).hash_key == "dueShard" &&
      one(aws_dynamodb_table.locks.global_secondary_index).range_key == "dueAt" &&
      one(aws_dynamodb_table.locks.global_secondary_index).projection_type == "KEYS_ONLY" &&
      contains(aws_dynamodb_table.locks.attribute, { name = "dueShard", type = "S" }) &&
      contains(aws_dynamodb_table.locks.attribute, { name = "dueAt", type = "N" })
    )
    error_message = "the table must have DynamoDBStorage's due index: dueIndex on dueShard (S) and dueAt (N), keys only"
  }

  assert {
    condition     = aws_dynamodb_table.locks.ttl[0].attribute_name == "expireAt" && aws_dynamodb_table.locks.ttl[0].enabled
    error_message = "TTL must be enabled on expireAt"
  }

  assert {
    condition     = aws_dynamodb_table.locks.billing_mode == "PAY_PER_REQUEST" && aws_dynamodb_table.locks.point_in_time_recovery[0].enabled
    error_message = "the lock table must be on-demand with point-in-time recovery"
  }

  assert {
    condition     = length(aws_dynamodb_table.locks.server_side_encryption) == 0
    error_message = "without a KMS key the table uses the AWS owned key"
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "the bucket must be versioned"
  }

  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.this.block_public_acls,
      aws_s3_bucket_public_access_block.this.block_public_policy,
      aws_s3_bucket_public_access_block.this.ignore_public_acls,
      aws_s3_bucket_public_access_block.this.restrict_public_buckets,
    ])
    error_message = "all public access must be blocked"
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
    error_message = "without a KMS key the bucket uses SSE-S3"
  }

  assert {
    condition     = one(aws_s3_bucket_lifecycle_configuration.this.rule).noncurrent_version_expiration[0].noncurrent_days == 30
    error_message = "noncurrent versions expire after 30 days by default"
  }

  assert {
    condition     = one(aws_s3_bucket_lifecycle_configuration.this.rule).filter[0].prefix == "actors/"
    error_message = "the lifecycle rule covers the snapshot prefix"
  }

  assert {
    condition     = output.bucket == "orders-state" && output.prefix == "actors/" && output.table_name == "orders-locks" && output.region == "eu-west-1"
    error_message = "the outputs must be what S3Storage and DynamoDBLockManager take"
  }

  assert {
    condition     = output.policy_arn == "arn:aws:iam::123456789012:policy/orders-state-durable-state" && aws_iam_policy.this.name == "orders-state-durable-state"
    error_message = "the policy is named after the bucket by default"
  }

  assert {
    condition = jsondecode(output.policy_json).Statement == [
      {
        Sid      = "Snapshots"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
        Resource = "arn:aws:s3:::orders-state/actors/*"
      },
      {
        Sid       = "ListSnapshots"
        Effect    = "Allow"
        Action    = ["s3:ListBucket"]
        Resource  = "arn:aws:s3:::orders-state"
        Condition = { StringLike = { "s3:prefix" = ["actors/*"] } }
      },
      {
        Sid    = "Leases"
        Effect = "Allow"
        Action = ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem"]
        Resource = [
          "arn:aws:dynamodb:eu-west-1:123456789012:table/orders-locks",
          "arn:aws:dynamodb:eu-west-1:123456789012:table/orders-locks/index/dueIndex",
        ]
      },
    ]
    error_message = "the policy must grant exactly the library's calls on the prefix and the table"
  }
}

run "no_waker_by_default" {
  command = plan

  assert {
    condition     = length(aws_cloudwatch_event_rule.waker) == 0 && output.waker_rule_arn == null
    error_message = "without waker_function_arn there is no schedule"
  }
}

run "waker_schedule" {
  command = apply

  variables {
    waker_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders-waker"
  }

  assert {
    condition     = aws_cloudwatch_event_rule.waker[0].schedule_expression == "rate(1 minute)"
    error_message = "the waker runs every minute by default"
  }

  assert {
    condition     = aws_cloudwatch_event_target.waker[0].arn == "arn:aws:lambda:eu-west-1:123456789012:function:orders-waker"
    error_message = "the rule must target the waker function"
  }

  assert {
    condition = (
      aws_lambda_permission.waker[0].principal == "events.amazonaws.com" &&
      aws_lambda_permission.waker[0].action == "lambda:InvokeFunction"
    )
    error_message = "EventBridge must be allowed to invoke the waker"
  }
}

run "rejects_a_bad_schedule" {
  command = plan

  variables {
    waker_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders-waker"
    waker_schedule     = "every minute"
  }

  expect_failures = [var.waker_schedule]
}

run "whole_bucket" {
  command = apply

  variables {
    prefix = ""
  }

  assert {
    condition = one([for s in jsondecode(output.policy_json).Statement : s if s.Sid == "ListSnapshots"]) == {
      Sid      = "ListSnapshots"
      Effect   = "Allow"
      Action   = ["s3:ListBucket"]
      Resource = "arn:aws:s3:::orders-state"
    }
    error_message = "with no prefix the bucket is the snapshots' and listing it needs no condition"
  }

  assert {
    condition     = one([for s in jsondecode(output.policy_json).Statement : s if s.Sid == "Snapshots"]).Resource == "arn:aws:s3:::orders-state/*"
    error_message = "with no prefix the object actions cover the bucket"
  }
}

run "customer_managed_key" {
  command = apply

  variables {
    kms_key_arn                        = "arn:aws:kms:eu-west-1:123456789012:key/0b7e4a1c-0000-4000-8000-000000000000"
    noncurrent_version_expiration_days = 7
    policy_name                        = "orders-runtime"
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" && one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled
    error_message = "with a KMS key the bucket uses SSE-KMS with a bucket key"
  }

  assert {
    condition     = one(aws_dynamodb_table.locks.server_side_encryption).kms_key_arn == var.kms_key_arn
    error_message = "with a KMS key the table is encrypted with it"
  }

  assert {
    condition     = one([for s in jsondecode(output.policy_json).Statement : s if s.Sid == "EncryptionKey"]).Action == ["kms:Decrypt", "kms:GenerateDataKey"]
    error_message = "with a KMS key the policy grants its use"
  }

  assert {
    condition     = contains(one([for s in jsondecode(output.policy_json).Statement : s if s.Sid == "EncryptionKey"]).Condition.StringEquals["kms:ViaService"], "s3.eu-west-1.amazonaws.com")
    error_message = "the key may be used only through S3 and DynamoDB"
  }

  assert {
    condition     = one(aws_s3_bucket_lifecycle_configuration.this.rule).noncurrent_version_expiration[0].noncurrent_days == 7 && aws_iam_policy.this.name == "orders-runtime"
    error_message = "variables must reach the resources"
  }
}

run "rejects_invalid_names" {
  command = plan

  variables {
    bucket_name                        = "Orders_State"
    prefix                             = "/actors/"
    noncurrent_version_expiration_days = 0
  }

  expect_failures = [
    var.bucket_name,
    var.prefix,
    var.noncurrent_version_expiration_days,
  ]
}
