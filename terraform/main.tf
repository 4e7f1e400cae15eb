# Shared locals: the metric catalog and resource names.

locals {
  # The one source of truth for metric names, units and statistics: a byte-identical copy of
  # metricskit/catalog.json (`make sync-catalog`; a test fails when they differ). Metric names
  # are only ever looked up in this map, so a name the library does not emit fails the plan.
  catalog = jsondecode(file("${path.module}/metric_catalog.json"))
  metric  = { for m in concat(local.catalog.metrics, local.catalog.self_metrics) : m.name => m }
  dim     = local.catalog.dimensions

  # User distributions (KafkaLatency, ...) are not in the catalog by name; they share the
  # catalog's distribution unit and statistics.
  distribution = local.catalog.distribution_example

  # The workers' own dimensions are part of the identity of every job and stage series the
  # library publishes: its catalog metrics and the user's distributions, not its self-metrics
  # (JobId only) nor the cost tracker's. Sorted by name, so the dashboard body is stable.
  own_dimension_names   = sort(keys(var.dimensions))
  own_dimension_pairs   = flatten([for name in local.own_dimension_names : [name, var.dimensions[name]]])
  own_dimension_metrics = [for m in local.catalog.metrics : m.name if m.emitter == "library"]
  # For SEARCH (CloudWatch's search expression syntax): the schema's extra dimension names,
  # each in double quotes (a name with any character other than a letter or digit, such as
  # "_", "." or "-", must be quoted there; the namespace is quoted the same way), and an exact-match
  # term per dimension, whose value escapes \ " ( and ) with a backslash as exact matches
  # require (the backslash first, so the escapes themselves are not escaped again).
  # https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/search-expression-syntax.html
  own_dimension_schema = join("", [for name in local.own_dimension_names : ",\"${name}\""])
  own_dimension_terms = join("", [
    for name in local.own_dimension_names :
    " ${name}=\"${replace(replace(replace(replace(var.dimensions[name], "\\", "\\\\"), "\"", "\\\""), "(", "\\("), ")", "\\)")}\""
  ])
  # Names the library refuses as dimensions because it publishes metrics so named (EMF writes
  # dimensions and metrics side by side); checked by a precondition on the dashboard.
  own_dimension_clashes = setintersection(local.own_dimension_names, keys(local.metric))

  dashboard_name = coalesce(var.dashboard_name, "${var.name_prefix}-${replace(var.namespace, "/[^A-Za-z0-9_-]/", "-")}")

  # AWS name limits the module's names are checked against. With name_prefix at most 32
  # characters these always fit: SNS topic "<prefix>-alarms" (256), IAM role and Lambda function
  # "<prefix>-cost-tracker" (64 each), role policy (128), worker policy "<prefix>-worker" (128),
  # EventBridge rule "<prefix>-cost-tracker-schedule" (64), log group (512), the stalled,
  # error-rate and cost alarms (255, see alarms.tf). What can overflow is checked where it is
  # used: the dashboard name (precondition, dashboard.tf), the latency alarm names
  # (precondition, alarms.tf) and the Lambda description (truncated, cost_tracker.tf).
  dashboard_name_max_length     = 255 # PutDashboard DashboardName
  lambda_description_max_length = 256 # CreateFunction Description
  job_table_name                = coalesce(var.job_table_name, "${var.name_prefix}-jobs")
  function_name                 = "${var.name_prefix}-cost-tracker"
  region                        = data.aws_region.current.name
  partition                     = data.aws_partition.current.partition
  # The console's domain differs by partition (China and GovCloud have their own).
  console_domain = lookup(
    { "aws-cn" = "console.amazonaws.cn", "aws-us-gov" = "console.amazonaws-us-gov.com" },
    local.partition,
    "console.aws.amazon.com",
  )
}

data "aws_region" "current" {}

data "aws_partition" "current" {}
