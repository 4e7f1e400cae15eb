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

data "aws_iam_policy_document" "worker" {
  source_policy_documents = data.aws_iam_policy_document.job_table_key[*].json

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
    # Exactly what metricskit's job registry does: register a job (PutItem), ADD to done and
    # set the status (UpdateItem), read line-count caches and checkpoints (GetItem). Workers
    # never list jobs, so neither Query nor Scan.
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.jobs.arn]
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
