# The job registry: one DynamoDB table shared by workers and the cost tracker.
# Layout (item kinds, attributes) is the contract in metricskit/job_table.py: hash key job_id
# (string), no sort key, item_type telling job / linecount / csvrecords / checkpoint /
# cost_cache apart.

resource "aws_dynamodb_table" "jobs" {
  name                        = local.job_table_name
  billing_mode                = "PAY_PER_REQUEST" # a handful of writes per worker per minute
  hash_key                    = "job_id"
  deletion_protection_enabled = var.job_table_deletion_protection

  attribute {
    name = "job_id"
    type = "S"
  }

  # Finished jobs and their checkpoints carry expires_at (metricskit/job_table.py EXPIRES_AT,
  # a test keeps the two equal), set by the workers from finished_job_retention_days: DynamoDB
  # deletes them after that (within a few days, at no cost), so the cost tracker's Scan of the
  # table does not grow with every job ever run. Items without it (running jobs, caches) stay.
  ttl {
    attribute_name = local.job_table_ttl_attribute
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  # Always encrypted; a customer managed key when one is given, else the AWS managed key.
  server_side_encryption {
    enabled     = true
    kms_key_arn = var.job_table_kms_key_arn
  }

  tags = var.tags
}

locals {
  job_table_ttl_attribute = "expires_at"
}
