# IAM: a policy for the workers, and the cost tracker's role. Least privilege: every statement
# is scoped to this module's table, log group or namespace wherever AWS allows it.

# With a customer managed key on the job table, every DynamoDB call that reads or writes items
# is authorized against that key too: DynamoDB calls AWS KMS on the caller's behalf, so the
# caller needs these KMS actions (modelled on the AWS managed aws/dynamodb key's policy, which
# also allows kms:CreateGrant, needed only by whoever creates the table, and adds a
# kms:CallerAccount condition). kms:ViaService limits them to requests DynamoDB makes in this
# region, so the roles cannot use the key directly. Only when a key is set; merged into
# both the worker policy and the cost tracker's.
data "aws_iam_policy_document" "job_table_key" {
  count = var.job_table_kms_key_arn == null ? 0 : 1

  statement {
    sid       = "JobTableKeyViaDynamoDB"
    actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
    resources = [var.job_table_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${local.region}.amazonaws.com"]
    }
  }
}

# --- Workers ----------------------------------------------------------------------------------

# Reading the input objects workers count (metricskit.count_lines / count_csv_records on
# s3:// URIs: HeadObject for the ETag the cache is keyed by, then GetObject; both are
# authorized by s3:GetObject). Only for the buckets the caller names: the module cannot know
# them. Read at plan time (it names no resource of the module), merged into the worker policy.
data "aws_iam_policy_document" "worker_s3_read" {
  count = length(var.worker_s3_read_arns) > 0 ? 1 : 0

  statement {
    sid       = "ReadInputObjects"
    actions   = ["s3:GetObject"]
    resources = var.worker_s3_read_arns
  }
}

locals {
  # The cost tracker's own items in the job table (its Cost Explorer cache and the daily
  # request budget): metricskit/job_table.py COST_CACHE_PREFIX, a test keeps the two equal.
  cost_cache_key_prefix = "costcache#"
}

data "aws_iam_policy_document" "worker" {
  source_policy_documents = concat(
    data.aws_iam_policy_document.job_table_key[*].json,
    data.aws_iam_policy_document.worker_s3_read[*].json,
  )

  statement {
    sid     = "PutMetricsInOwnNamespace"
    actions = ["cloudwatch:PutMetricData"]
    # PutMetricData supports no resource-level permissions ("*" is the only valid resource);
    # the cloudwatch:namespace condition is what limits it to this namespace.
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.namespace]
    }
  }

  statement {
    sid = "JobTableItems"
    # Exactly what workers do to the table's items: the job registry registers a job, ADDs to
    # done and sets the status with UpdateItem (never PutItem) and reads its job back with
    # GetItem; the line- and CSV-record-count caches (metricskit/lines.py) and the examples'
    # checkpoints write their items with PutItem and read them with GetItem. Workers never
    # list jobs, so neither Query nor Scan.
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.jobs.arn]
  }

  statement {
    sid = "NoCostCacheWrites"
    # The cost tracker's cache items hold its Cost Explorer figures and the daily request
    # budget that caps its paid requests: a worker must not overwrite them (whatever other
    # policy its role has). Every item write names its key, so dynamodb:LeadingKeys is always
    # present for these actions; ForAnyValue covers BatchWriteItem's many keys.
    effect    = "Deny"
    actions   = ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.jobs.arn]

    condition {
      test     = "ForAnyValue:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["${local.cost_cache_key_prefix}*"]
    }
  }
}

resource "aws_iam_policy" "worker" {
  name        = "${var.name_prefix}-worker"
  description = "metricskit workers: PutMetricData to ${var.namespace} and the job table's items. Attach to ECS task, Batch job or EC2 instance roles."
  policy      = data.aws_iam_policy_document.worker.json
  tags        = var.tags
}

# --- Cost tracker -----------------------------------------------------------------------------

data "aws_iam_policy_document" "cost_tracker_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cost_tracker" {
  name               = "${var.name_prefix}-cost-tracker"
  description        = "metricskit cost tracker Lambda for namespace ${var.namespace}"
  assume_role_policy = data.aws_iam_policy_document.cost_tracker_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "cost_tracker" {
  source_policy_documents = data.aws_iam_policy_document.job_table_key[*].json

  statement {
    sid     = "CostExplorerRead"
    actions = ["ce:GetCostAndUsage"]
    # Cost Explorer's GetCostAndUsage supports no resource-level permissions: "*" is the only
    # resource AWS accepts for it.
    resources = ["*"]
  }

  statement {
    sid = "JobTable"
    # Scan lists running and recently finished jobs; GetItem/UpdateItem read and write the job
    # items' actual cost and the Cost Explorer cache item (the tracker never calls PutItem).
    actions   = ["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.jobs.arn]
  }

  statement {
    sid = "OwnLogGroup"
    # Lambda's own logs, which also carry the EMF metrics; the group itself is Terraform's.
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.cost_tracker.arn}:*"]
  }
}

resource "aws_iam_role_policy" "cost_tracker" {
  name   = "${var.name_prefix}-cost-tracker"
  role   = aws_iam_role.cost_tracker.id
  policy = data.aws_iam_policy_document.cost_tracker.json
}
