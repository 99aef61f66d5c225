output "bucket" {
  description = "S3Storage(bucket=...)."
  value       = aws_s3_bucket.this.bucket
}

output "prefix" {
  description = "S3Storage(prefix=...)."
  value       = var.prefix
}

output "table_name" {
  description = "DynamoDBLockManager(table_name=...) and DynamoDBStorage(table=...)."
  value       = aws_dynamodb_table.locks.name
}

output "region" {
  description = "region_name=... for S3Storage, DynamoDBStorage and DynamoDBLockManager."
  value       = data.aws_region.current.name
}

output "kms_key_arn" {
  description = "S3Storage(kms_key_id=...) when writes should name the key explicitly (the bucket default uses it anyway); null without a key."
  value       = var.kms_key_arn
}

output "policy_arn" {
  description = "ARN of the IAM policy to attach to the role that runs persisted actors."
  value       = aws_iam_policy.this.arn
}

output "policy_json" {
  description = "The same policy as JSON, for an inline role policy."
  value       = aws_iam_policy.this.policy
}

output "bucket_arn" {
  description = "ARN of the snapshot bucket."
  value       = aws_s3_bucket.this.arn
}

output "table_arn" {
  description = "ARN of the lock table."
  value       = aws_dynamodb_table.locks.arn
}

output "lambda_environment" {
  description = "Environment variables for examples/lambda_sqs.py."
  value = {
    STATE_BUCKET = aws_s3_bucket.this.bucket
    STATE_PREFIX = var.prefix
    LOCK_TABLE   = aws_dynamodb_table.locks.name
  }
}

output "waker_rule_arn" {
  description = "ARN of the EventBridge rule that runs the waker, or null without waker_function_arn."
  value       = var.waker_function_arn == null ? null : aws_cloudwatch_event_rule.waker[0].arn
}
