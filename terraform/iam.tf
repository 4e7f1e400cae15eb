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
  # Key prefixes of metricskit/job_table.py (a test keeps them equal). The cost tracker's own
  # items (its Cost Explorer cache and the daily request budget): COST_CACHE_PREFIX.
  cost_cache_key_prefix = "costcache#"
  # The examples' checkpoints, checkpoint#<job_id>#<shard>: CHECKPOINT_PREFIX.
  checkpoint_key_prefix = "checkpoint#"
  # The line- and CSV-record-count caches (LINECOUNT_PREFIX, CSVRECORDS_PREFIX): keyed by the
  # file, not the job, and checked against the file's ETag or size and mtime before use, so
  # any worker may fill them whatever job it runs.
  count_cache_key_patterns = ["linecount#*", "csvrecords#*"]

  # With worker_job_ids, the keys the worker policy may read and write: the jobs' items, their
  # checkpoints and the count caches. The patterns hold no "#" (validated), so a job pattern
  # cannot name another kind of item; but "*" also matches "#", so "c*" would match every
  # checkpoint: the NoOtherJobsCheckpoints deny closes that.
  worker_checkpoint_key_patterns = [for p in coalesce(var.worker_job_ids, []) : "${local.checkpoint_key_prefix}${p}#*"]
  worker_item_key_patterns = concat(
    coalesce(var.worker_job_ids, []), local.worker_checkpoint_key_patterns, local.count_cache_key_patterns,
  )

  # Every item-level action that names its keys (dynamodb:LeadingKeys is then in the request).
  # Scan, and a PartiQL SELECT without a key condition, name none: a deny conditioned on
  # LeadingKeys never applies to them, which is why workers get neither.
  item_read_actions  = ["dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:PartiQLSelect", "dynamodb:Query"]
  item_write_actions = ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PartiQLDelete", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate", "dynamodb:PutItem", "dynamodb:UpdateItem"]
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
    # done and sets the status with UpdateItem (never PutItem) and reads its own job back with
    # GetItem; the line- and CSV-record-count caches (metricskit/lines.py) and the examples'
    # checkpoints write their items with PutItem and read them with GetItem. Workers never
    # list jobs, so neither Query nor Scan (`metricskit jobs` needs a role with Scan).
    # With worker_job_ids, only those jobs' items, their checkpoints and the count caches:
    # reads too, since a worker reads only its own job's items and the caches, and other
    # jobs' items hold their hourly rate and cost. GetItem, PutItem and UpdateItem always name
    # exactly one key, so ForAllValues never meets the empty set (which it would allow).
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.jobs.arn]

    dynamic "condition" {
      for_each = var.worker_job_ids == null ? [] : [local.worker_item_key_patterns]
      content {
        test     = "ForAllValues:StringLike"
        variable = "dynamodb:LeadingKeys"
        values   = condition.value
      }
    }
  }

  dynamic "statement" {
    for_each = var.worker_job_ids == null ? [] : [local.worker_checkpoint_key_patterns]
    content {
      sid = "NoOtherJobsCheckpoints"
      # A job pattern's "*" matches "#" too: "c*" (or "*4", against a shard "0/4") matches
      # checkpoint#<another job>#<shard>. Deny any checkpoint key outside this policy's jobs.
      # Both conditions must hold: a checkpoint key (ForAnyValue:StringLike) that matches none
      # of the allowed checkpoint patterns (a negated operator: no value may match).
      effect    = "Deny"
      actions   = concat(local.item_read_actions, local.item_write_actions)
      resources = [aws_dynamodb_table.jobs.arn]

      condition {
        test     = "ForAnyValue:StringLike"
        variable = "dynamodb:LeadingKeys"
        values   = ["${local.checkpoint_key_prefix}*"]
      }

      condition {
        test     = "ForAnyValue:StringNotLike"
        variable = "dynamodb:LeadingKeys"
        values   = statement.value
      }
    }
  }

  statement {
    sid = "NoCostCacheWrites"
    # The cost tracker's cache items hold its Cost Explorer figures and the daily request
    # budget that caps its paid requests: a worker must not overwrite them, whatever other
    # policy its role has that allows item writes (PartiQL's included) on keys it names.
    # Every item write names its key, so dynamodb:LeadingKeys is present for these actions;
    # ForAnyValue covers BatchWriteItem's many keys.
    effect    = "Deny"
    actions   = local.item_write_actions
    resources = [aws_dynamodb_table.jobs.arn]

    condition {
      test     = "ForAnyValue:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["${local.cost_cache_key_prefix}*"]
    }
  }

  statement {
    sid = "NoCostCacheReads"
    # Nor read them: they hold the account's month-to-date cost per CostCategory and every
    # job's Cost Explorer cost, which workers never read (metricskit/ has no costcache# read).
    # Reads that name keys only: a Scan (or a PartiQL SELECT without a key condition) carries
    # no dynamodb:LeadingKeys, so this cannot stop a role that has Scan from elsewhere.
    effect    = "Deny"
    actions   = local.item_read_actions
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
