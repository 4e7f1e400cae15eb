output "dashboard_url" {
  description = "Console URL of the dashboard."
  value       = module.metricskit.dashboard_url
}

output "dashboard_name" {
  description = "Name of the dashboard."
  value       = module.metricskit.dashboard_name
}

output "alarm_arns" {
  description = "ARNs of the alarms."
  value       = module.metricskit.alarm_arns
}

output "sns_topic_arn" {
  description = "Topic the alarms notify."
  value       = module.metricskit.sns_topic_arn
}

output "job_table_name" {
  description = "METRICSKIT_JOB_TABLE for the workers."
  value       = module.metricskit.job_table_name
}

output "worker_policy_arn" {
  description = "Attach to the workers' roles."
  value       = module.metricskit.worker_policy_arn
}

output "cost_tracker_function_name" {
  description = "The cost tracker function."
  value       = module.metricskit.cost_tracker_function_name
}

output "cost_tracker_function_code_sha256" {
  description = "Deployed code hash."
  value       = module.metricskit.cost_tracker_function_code_sha256
}

output "worker_environment" {
  description = "Environment variables for the workers."
  value       = module.metricskit.worker_environment
}
