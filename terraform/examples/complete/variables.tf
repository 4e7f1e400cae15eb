variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "aws_endpoint_url" {
  description = "Endpoint of a local AWS (moto, LocalStack), e.g. http://127.0.0.1:5000. Null means real AWS and the provider behaves normally."
  type        = string
  default     = null
}

variable "namespace" {
  description = "CloudWatch namespace the workers publish to."
  type        = string
  default     = "CSVToKafka"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "metricskit-example"
}

variable "cost_tracker_zip_path" {
  description = "Zip built by `python -m cost_tracker.package --out dist` (it prints the path)."
  type        = string
}

variable "alarm_job_ids" {
  description = "JobIds to alarm on."
  type        = list(string)
  default     = ["csv-job-1"]
}

variable "alarm_email" {
  description = "Email address for alarm notifications, or null."
  type        = string
  default     = null
}

variable "job_id_input_type" {
  description = "\"input\" (a text box) or \"select\" (a drop-down of the namespace's JobIds) for the dashboard's JobId variable."
  type        = string
  default     = "input"
}

variable "stage_names" {
  description = "Stages of the example job, one line each in the per-stage progress widget; [] switches that widget to a SEARCH expression."
  type        = list(string)
  default     = ["read", "produce"] # the CSV-to-Kafka loader's stages
}

variable "latency_metric_names" {
  description = "Distributions shown as average and p99 latency and watched by the p99 alarms."
  type        = list(string)
  default     = ["KafkaLatency"]
}

variable "cost_tracker_schedule" {
  description = "EventBridge schedule expression of the cost tracker."
  type        = string
  default     = "rate(5 minutes)"
}

variable "dashboard_period_seconds" {
  description = "Period of the dashboard's time-series widgets (1, 5, 10, 20, 30 with high_resolution, or a multiple of 60); the local demo uses 5 for its short, high-resolution run."
  type        = number
  default     = 60
}

variable "high_resolution" {
  description = "Workers publish high-resolution metrics (required for a dashboard period under 60 s)."
  type        = bool
  default     = false
}
