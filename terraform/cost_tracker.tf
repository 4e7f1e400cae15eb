# The cost tracker: a scheduled Lambda that publishes EstimatedCost, ActualCost,
# CostPerMillionRecords and MonthlyCost (EMF to its log group, so no PutMetricData fees).
# Code comes from the deterministic zip of `python -m cost_tracker.package`; the zip's SHA-256
# is the source_code_hash, so a changed zip redeploys and an unchanged one never does. Since
# provider 5.51 that hash is not compared with the deployed code, so code changed outside
# Terraform would go unnoticed: the postcondition below fails the plan instead.

locals {
  cost_tracker_environment = merge(
    {
      METRICSKIT_JOB_TABLE          = aws_dynamodb_table.jobs.name
      METRICSKIT_NAMESPACE          = var.namespace
      METRICSKIT_SINK               = "emf"
      COST_TRACKER_CE_REFRESH_HOURS = tostring(var.cost_tracker_ce_refresh_hours)
      # The hard cap on Cost Explorer requests a day, every page counted (docs/COST_TRACKING.md).
      COST_TRACKER_CE_MAX_REQUESTS_PER_DAY = tostring(var.cost_tracker_ce_max_requests_per_day)
      # How far back a worker-written job start may take the query (docs/COST_TRACKING.md).
      COST_TRACKER_CE_LOOKBACK_DAYS = tostring(var.cost_tracker_ce_lookback_days)
    },
    var.cost_tracker_pricing_overrides_json == null ? {} : {
      COST_TRACKER_PRICING_OVERRIDES = var.cost_tracker_pricing_overrides_json
    },
    # The workers' own dimensions: the progress the tracker publishes for a job whose workers
    # are gone goes into their series (the dashboard rows), not a JobId-only one nobody reads.
    length(var.dimensions) == 0 ? {} : { METRICSKIT_DIMENSIONS = jsonencode(var.dimensions) },
  )
}

resource "aws_cloudwatch_log_group" "cost_tracker" {
  #checkov:skip=CKV_AWS_158:the group holds EMF cost figures only (no secrets); var.tags and retention cover it, and a KMS key policy for logs would be one more thing to misconfigure
  #checkov:skip=CKV_AWS_338:retention is a variable (default 30 days): EMF metrics are extracted on arrival, the raw logs only serve debugging
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "cost_tracker" {
  #checkov:skip=CKV_AWS_117:the function only calls AWS APIs (Cost Explorer, DynamoDB); a VPC would need NAT or endpoints and adds nothing
  #checkov:skip=CKV_AWS_116:a scheduled run that fails is simply retried by the next tick; there is no event worth keeping in a DLQ
  #checkov:skip=CKV_AWS_173:the environment holds a table name, a namespace and rates, no secrets; the AWS managed key already encrypts it
  #checkov:skip=CKV_AWS_50:X-Ray tracing of a short scheduled batch run costs money and would need xray:* on "*"; its logs tell the story
  #checkov:skip=CKV_AWS_272:code signing needs a Signer profile the module cannot assume; the zip's SHA-256 pins the deployed code instead
  function_name = local.function_name
  # A long namespace would push this past Lambda's limit; a cut description harms nothing.
  description                    = substr("metricskit cost tracker for namespace ${var.namespace}", 0, local.lambda_description_max_length)
  role                           = aws_iam_role.cost_tracker.arn
  filename                       = var.cost_tracker_zip_path
  source_code_hash               = filebase64sha256(var.cost_tracker_zip_path)
  handler                        = "cost_tracker.handler.handler"
  runtime                        = "python3.12"
  timeout                        = var.cost_tracker_timeout_seconds
  memory_size                    = var.cost_tracker_memory_mb
  reserved_concurrent_executions = var.cost_tracker_reserved_concurrency

  environment {
    variables = local.cost_tracker_environment
  }

  tags = var.tags

  # The log group exists (with its retention) before the first invocation could create it.
  depends_on = [aws_cloudwatch_log_group.cost_tracker, aws_iam_role_policy.cost_tracker]

  lifecycle {
    postcondition {
      condition     = self.code_sha256 == filebase64sha256(var.cost_tracker_zip_path)
      error_message = "The deployed cost tracker code (SHA-256 ${self.code_sha256}) is not the zip's (${filebase64sha256(var.cost_tracker_zip_path)}): it was changed outside Terraform. Deploy the zip again with terraform apply -replace=<module address>.aws_lambda_function.cost_tracker."
    }
  }
}

resource "aws_cloudwatch_event_rule" "cost_tracker" {
  name                = "${var.name_prefix}-cost-tracker-schedule"
  description         = "Runs the metricskit cost tracker for namespace ${var.namespace}."
  schedule_expression = var.cost_tracker_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "cost_tracker" {
  rule      = aws_cloudwatch_event_rule.cost_tracker.name
  target_id = "cost-tracker"
  arn       = aws_lambda_function.cost_tracker.arn
}

resource "aws_lambda_permission" "cost_tracker_schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.cost_tracker.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.cost_tracker.arn
}
