# The module applied to a moto server instead of AWS: see README.md and run.py.

terraform {
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

variable "endpoint" {
  description = "URL of the moto server, e.g. http://127.0.0.1:5000."
  type        = string
}

variable "name" {
  description = "Bucket name; the table and policy names derive from it."
  type        = string
  default     = "durable-state-example"
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true

  endpoints {
    dynamodb = var.endpoint
    iam      = var.endpoint
    s3       = var.endpoint
    sts      = var.endpoint
  }
}

module "durable_state" {
  source = "../.."

  bucket_name = var.name
  prefix      = "actors/"
  table_name  = "${var.name}-locks"

  # A throwaway environment reached over plain HTTP: let `terraform destroy`
  # remove everything, and do not deny non-TLS requests.
  deletion_protection = false
  force_destroy       = true
  require_tls         = false

  tags = {
    purpose = "durable-state-example"
  }
}

output "bucket" {
  value = module.durable_state.bucket
}

output "prefix" {
  value = module.durable_state.prefix
}

output "table_name" {
  value = module.durable_state.table_name
}

output "region" {
  value = module.durable_state.region
}

output "policy_arn" {
  value = module.durable_state.policy_arn
}
