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
