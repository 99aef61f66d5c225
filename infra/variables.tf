variable "bucket_name" {
  description = "Name of the S3 bucket that holds the snapshots (S3Storage's bucket)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens."
  }
}

variable "prefix" {
  description = "Key prefix of the snapshots in the bucket (S3Storage's prefix), e.g. \"actors/\". The IAM policy is limited to it."
  type        = string
  default     = ""

  validation {
    condition     = !startswith(var.prefix, "/") && length(var.prefix) < 512
    error_message = "prefix must not start with \"/\" and must be shorter than 512 characters."
  }
}

variable "table_name" {
  description = "Name of the DynamoDB table for leases (DynamoDBLockManager's table_name) and, if used, DynamoDBStorage's snapshots (its table)."
  type        = string
  default     = "lockingTable"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{3,255}$", var.table_name))
    error_message = "table_name must be 3-255 letters, digits, underscores, dots or hyphens."
  }
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key for the bucket's and the table's encryption. null: SSE-S3 (AES256) for the bucket and an AWS owned key for the table."
  type        = string
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which replaced or deleted snapshot versions are removed (every save makes one; this is the window to recover an older state)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of days, at least 1."
  }
}

variable "policy_name" {
  description = "Name of the IAM policy granting the library's access. null: \"<bucket_name>-durable-state\"."
  type        = string
  default     = null
}

variable "point_in_time_recovery" {
  description = "Enable point-in-time recovery on the lock table."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect the lock table from deletion (turn off to let terraform destroy it)."
  type        = bool
  default     = true
}

variable "require_tls" {
  description = "Attach a bucket policy that denies requests not made over TLS. Turn off only for local emulators reached over plain HTTP."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Let terraform destroy the bucket even when it holds snapshots."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "waker_function_arn" {
  description = "ARN of a Lambda function whose handler is make_schedule_handler(system): an EventBridge rule then invokes it on waker_schedule to fire due timers. null: no schedule (run a waker elsewhere)."
  type        = string
  default     = null
}

variable "waker_schedule" {
  description = "How often the waker runs, as an EventBridge schedule expression."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.waker_schedule))
    error_message = "waker_schedule must be an EventBridge schedule expression: rate(...) or cron(...)."
  }
}
