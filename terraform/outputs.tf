# Outputs, named <resource>_<attribute>. docs/DASHBOARD_GUIDE.md lists them (checked by a test).

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "dashboard_arn" {
  description = "ARN of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_arn
}

output "dashboard_url" {
  description = "Console URL of the dashboard; type (or, with job_id_input_type = \"select\", pick) a JobId in its JobId box to switch jobs."
  value       = "https://${local.region}.${local.console_domain}/cloudwatch/home?region=${local.region}#dashboards/dashboard/${aws_cloudwatch_dashboard.this.dashboard_name}"
}

output "sns_topic_arn" {
  description = "ARN of the SNS topic every alarm notifies; subscribe pagers or chat here."
  value       = aws_sns_topic.alarms.arn
}

output "alarm_arns" {
  description = "ARNs of the module's alarms (stalled, error rate, p99 latency, cost), in dashboard order."
  value       = local.alarm_arns
}

output "job_table_name" {
  description = "Name of the DynamoDB job table: set METRICSKIT_JOB_TABLE to it in the workers."
  value       = aws_dynamodb_table.jobs.name
}

output "job_table_arn" {
  description = "ARN of the DynamoDB job table."
  value       = aws_dynamodb_table.jobs.arn
}

output "worker_policy_arn" {
  description = "ARN of the IAM policy to attach to worker roles (ECS task, Batch job, EC2 instance)."
  value       = aws_iam_policy.worker.arn
}

output "cost_tracker_function_name" {
  description = "Name of the cost tracker Lambda function."
  value       = aws_lambda_function.cost_tracker.function_name
}

output "cost_tracker_function_arn" {
  description = "ARN of the cost tracker Lambda function."
  value       = aws_lambda_function.cost_tracker.arn
}

output "cost_tracker_function_code_sha256" {
  description = "Base64 SHA-256 of the deployed code, as Lambda reports it; compare it with the zip builder's output."
  value       = aws_lambda_function.cost_tracker.code_sha256
}

output "cost_tracker_role_arn" {
  description = "ARN of the cost tracker's IAM role."
  value       = aws_iam_role.cost_tracker.arn
}

output "cost_tracker_log_group_name" {
  description = "Log group of the cost tracker (its EMF metrics and messages)."
  value       = aws_cloudwatch_log_group.cost_tracker.name
}

output "cost_tracker_rule_arn" {
  description = "ARN of the EventBridge rule that schedules the cost tracker."
  value       = aws_cloudwatch_event_rule.cost_tracker.arn
}

output "worker_environment" {
  description = "Environment variables to give the workers (METRICSKIT_NAMESPACE, METRICSKIT_JOB_TABLE, METRICSKIT_FINISHED_JOB_RETENTION_DAYS; METRICSKIT_DIMENSIONS when dimensions is set; METRICSKIT_HIGH_RESOLUTION when high_resolution is on, with METRICSKIT_FLUSH_INTERVAL when dashboard_period_seconds is under 60)."
  value = merge(
    {
      METRICSKIT_NAMESPACE = var.namespace
      METRICSKIT_JOB_TABLE = aws_dynamodb_table.jobs.name
      # Always set, 0 included: the workers write the expiry the table's TTL acts on.
      METRICSKIT_FINISHED_JOB_RETENTION_DAYS = tostring(var.finished_job_retention_days)
    },
    length(var.dimensions) == 0 ? {} : { METRICSKIT_DIMENSIONS = jsonencode(var.dimensions) },
    # A sub-minute dashboard needs a data point per period: high-resolution storage, and a
    # flush at least that often (a 60 s flush would put a minute's records in one 10 s period
    # and leave the five others empty).
    var.high_resolution ? { METRICSKIT_HIGH_RESOLUTION = "true" } : {},
    var.high_resolution && var.dashboard_period_seconds < 60 ? { METRICSKIT_FLUSH_INTERVAL = tostring(var.dashboard_period_seconds) } : {},
  )
}
