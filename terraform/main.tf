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

  dashboard_name = coalesce(var.dashboard_name, "${var.name_prefix}-${replace(var.namespace, "/[^A-Za-z0-9_-]/", "-")}")
  job_table_name = coalesce(var.job_table_name, "${var.name_prefix}-jobs")
  function_name  = "${var.name_prefix}-cost-tracker"
  region         = data.aws_region.current.name
  partition      = data.aws_partition.current.partition
}

data "aws_region" "current" {}

data "aws_partition" "current" {}
