# A complete deployment of the metricskit module. Against real AWS:
#   terraform init && terraform apply -var cost_tracker_zip_path=dist/cost_tracker.zip
# Against a local AWS (moto/LocalStack), add -var aws_endpoint_url=http://127.0.0.1:5000.

locals {
  local_aws = var.aws_endpoint_url != null
}

provider "aws" {
  region = var.region

  # Only a local AWS needs these; with aws_endpoint_url unset they are false and the provider
  # validates credentials and looks up the account as usual.
  skip_credentials_validation = local.local_aws
  skip_requesting_account_id  = local.local_aws
  skip_metadata_api_check     = local.local_aws
  s3_use_path_style           = local.local_aws

  dynamic "endpoints" {
    for_each = local.local_aws ? [var.aws_endpoint_url] : []

    content {
      cloudwatch = endpoints.value
      dynamodb   = endpoints.value
      events     = endpoints.value
      iam        = endpoints.value
      kms        = endpoints.value
      lambda     = endpoints.value
      logs       = endpoints.value
      sns        = endpoints.value
      sts        = endpoints.value
    }
  }
}

module "metricskit" {
  source = "../.."

  namespace                = var.namespace
  name_prefix              = var.name_prefix
  cost_tracker_zip_path    = var.cost_tracker_zip_path
  alarm_job_ids            = var.alarm_job_ids
  alarm_email              = var.alarm_email
  default_job_id           = length(var.alarm_job_ids) > 0 ? var.alarm_job_ids[0] : "example-job"
  latency_metric_names     = var.latency_metric_names
  cost_tracker_schedule    = var.cost_tracker_schedule
  stage_names              = var.stage_names
  job_id_input_type        = var.job_id_input_type
  dashboard_period_seconds = var.dashboard_period_seconds
  high_resolution          = var.high_resolution

  tags = {
    Project = "metricskit-example"
  }
}
