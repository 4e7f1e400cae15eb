# Alarms and their SNS topic.
#
# CloudWatch alarms need concrete dimensions: they cannot use SEARCH, so one alarm cannot watch
# "every JobId". The module therefore creates the alarms per job, for the JobIds listed in
# var.alarm_job_ids. Remove a finished job from the list, or its stalled alarm fires (missing
# data counts as stalled by design).
#
# Each kind of alarm stays a resource of its own. Folding them into one for_each would change
# every alarm's address, and a moved block cannot name instance keys that come from a variable
# (the JobIds), so existing alarms would be destroyed and created again.

locals {
  alarm_jobs = toset(var.alarm_job_ids)

  # The percentile the catalog lists for distributions (p99).
  latency_percentile = one([for s in local.distribution.statistics : s if can(regex("^p[0-9.]+$", s))])

  latency_alarms = {
    for pair in setproduct(var.alarm_job_ids, var.latency_metric_names) :
    "${pair[0]}/${pair[1]}" => {
      job_id      = pair[0]
      metric_name = pair[1]
      alarm_name  = "${var.name_prefix}-${pair[0]}-${pair[1]}-${local.latency_percentile}"
    }
  }

  alarm_actions = [aws_sns_topic.alarms.arn]

  # Alarm names, in dashboard order. The ARNs are built from them (an alarm's ARN is fixed by
  # its name), so the dashboard body is known at plan time: a plan shows the alarm widgets.
  # Longest fixed names: name_prefix (32) + JobId (200) + "-cost-over-budget" = 250 of the
  # 255 CloudWatch allows; the latency alarm adds a metric name, so its length is checked
  # by a precondition below.
  job_alarm_names = {
    for kind in ["stalled", "error-rate", "cost-over-budget"] :
    kind => { for job in var.alarm_job_ids : job => "${var.name_prefix}-${job}-${kind}" }
  }
  alarm_names = concat(
    [for job in var.alarm_job_ids : local.job_alarm_names["stalled"][job]],
    [for job in var.alarm_job_ids : local.job_alarm_names["error-rate"][job]],
    [for key in sort(keys(local.latency_alarms)) : local.latency_alarms[key].alarm_name],
    [for job in var.alarm_job_ids : local.job_alarm_names["cost-over-budget"][job]],
  )
  alarm_arn_prefix = "arn:${local.partition}:cloudwatch:${local.region}:${data.aws_caller_identity.current.account_id}:alarm:"
  alarm_arns       = [for name in local.alarm_names : "${local.alarm_arn_prefix}${name}"]
}

# CloudWatch's limit on alarm names (PutMetricAlarm AlarmName: 1-255 characters).
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html
locals {
  alarm_name_max_length = 255
}

data "aws_caller_identity" "current" {}

# CloudWatch alarms cannot publish to a topic encrypted with the AWS managed SNS key (its key
# policy cannot grant cloudwatch.amazonaws.com), so the topic gets its own customer managed key
# unless the caller brings one.
data "aws_iam_policy_document" "alarm_topic_key" {
  count = var.sns_kms_key_arn == null ? 1 : 0

  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"] # In a key policy "*" means this key.

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"] # In a key policy "*" means this key.

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    # Only this account's alarms of this module (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:cloudwatch:${local.region}:${data.aws_caller_identity.current.account_id}:alarm:${var.name_prefix}-*"]
    }
  }
}

resource "aws_kms_key" "alarm_topic" {
  count = var.sns_kms_key_arn == null ? 1 : 0

  description             = "Encrypts the ${var.name_prefix} metricskit alarm topic; CloudWatch alarms may use it."
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.alarm_topic_key[0].json
  tags                    = var.tags
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.sns_kms_key_arn == null ? aws_kms_key.alarm_topic[0].arn : var.sns_kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Stalled: no RecordsProcessed in stalled_minutes of the last stalled_minutes + 1 minutes while the job has not
# completed. A worker that died, failed or was interrupted publishes nothing at all, and that is
# exactly a stall; a job that completed publishes nothing either, and must not page. Workers
# publish JobCompleted every flush (0, and 1 in the last flush of a job closed as completed), so
# FILL(completed, REPEAT) carries the last word of the job over the minutes it has been silent:
# a 1 clears the minute, a 0 (or a live worker's 0) leaves the minute to RecordsProcessed.
# REPEAT fills only after a real value inside the evaluated range, so the range is one minute
# longer than the stall it looks for: the minute of the last flush, then stalled_minutes of
# silence. Before a job's first flush, and once that last flush has left the range, the
# expression has no data, which "ignore" turns into "keep the state": no page for a job listed
# before it starts, and a stalled job stays in ALARM until it processes records again.
resource "aws_cloudwatch_metric_alarm" "job_stalled" {
  for_each = local.alarm_jobs

  alarm_name          = local.job_alarm_names["stalled"][each.key]
  alarm_description   = "metricskit: job ${each.key} processed no records for ${var.stalled_minutes} minutes and did not complete (stuck, or its workers died, failed or were stopped)."
  evaluation_periods  = var.stalled_minutes + 1
  datapoints_to_alarm = var.stalled_minutes
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "ignore"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags

  metric_query {
    id          = "stalled"
    label       = "stalled (1) or not (0)"
    expression  = "IF(FILL(completed, REPEAT) > 0, 0, IF(FILL(processed, 0) < 1, 1, 0))"
    return_data = true
  }

  # The expression's inputs, by the ids it names: the job's series of two catalog metrics.
  dynamic "metric_query" {
    for_each = { processed = local.metric["RecordsProcessed"], completed = local.metric["JobCompleted"] }

    content {
      id = metric_query.key

      metric {
        namespace   = var.namespace
        metric_name = metric_query.value.name
        unit        = metric_query.value.unit
        stat        = metric_query.value.statistic
        period      = 60
        dimensions  = merge(var.dimensions, { (local.dim.job) = each.key })
      }
    }
  }
}

# Error rate in percent: errors / (processed + errors), with metric math. FILL makes a period
# with only errors (or only records) count, IF avoids dividing by zero when the job is idle.
resource "aws_cloudwatch_metric_alarm" "error_rate" {
  for_each = local.alarm_jobs

  alarm_name          = local.job_alarm_names["error-rate"][each.key]
  alarm_description   = "metricskit: job ${each.key} error rate above ${var.error_rate_threshold_percent}% over ${var.error_rate_evaluation_minutes} minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_threshold_percent
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags

  metric_query {
    id          = "error_rate"
    label       = "error rate (%)"
    expression  = "IF(FILL(processed, 0) + FILL(errors, 0) > 0, 100 * FILL(errors, 0) / (FILL(processed, 0) + FILL(errors, 0)), 0)"
    return_data = true
  }

  # The expression's inputs, by the ids it names: the job's series of two catalog metrics.
  dynamic "metric_query" {
    for_each = { processed = local.metric["RecordsProcessed"], errors = local.metric["ErrorCount"] }

    content {
      id = metric_query.key

      metric {
        namespace   = var.namespace
        metric_name = metric_query.value.name
        unit        = metric_query.value.unit
        stat        = metric_query.value.statistic
        period      = var.error_rate_evaluation_minutes * 60
        dimensions  = merge(var.dimensions, { (local.dim.job) = each.key })
      }
    }
  }
}

# p99 latency: the library publishes Values/Counts distributions, so CloudWatch computes
# percentiles; 3 bad minutes in a row keep one slow flush from paging anybody.
resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  for_each = local.latency_alarms

  alarm_name          = each.value.alarm_name
  alarm_description   = "metricskit: job ${each.value.job_id} ${each.value.metric_name} ${local.latency_percentile} above ${var.latency_p99_threshold_ms} ms."
  namespace           = var.namespace
  metric_name         = each.value.metric_name
  unit                = local.distribution.unit
  extended_statistic  = local.latency_percentile
  dimensions          = merge(var.dimensions, { (local.dim.job) = each.value.job_id })
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.latency_p99_threshold_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags

  lifecycle {
    # name_prefix, JobId and metric name each pass their own validation, but together they
    # may not fit: fail the plan with the reason rather than the apply with AWS's.
    precondition {
      condition     = length(each.value.alarm_name) <= local.alarm_name_max_length
      error_message = "The latency alarm name \"${each.value.alarm_name}\" is ${length(each.value.alarm_name)} characters; CloudWatch allows ${local.alarm_name_max_length}. Shorten name_prefix, the JobId in alarm_job_ids or the name in latency_metric_names."
    }
  }
}

# Budget: the job's cost above the budget, the higher of the cost tracker's EstimatedCost and
# ActualCost (metric math MAX over the two). EstimatedCost alone left an unpriced job (no
# compute_profile or hourly_rate: no estimate at all) in INSUFFICIENT_DATA for good, even once
# Cost Explorer had its real cost; and an estimate below the real cost (Spot prices, storage,
# data transfer) never fired. MAX of an array of time series is one time series, point by
# point; a missing value counts as 0 (as in metric math's arithmetic), harmless for costs,
# which are never negative, and a period where neither has a point has none. (Metric math
# advises against MAX in alarms for its other form, MAX of one series, a scalar over the whole
# range fetched; the array form depends on nothing but the period's own points.)
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html
#
# The tracker publishes once per run of var.cost_tracker_schedule, which may be rate(1 hour),
# rate(1 day) or any cron, so most 5-minute periods hold no data point. With notBreaching
# those empty periods turned the alarm back to OK and the next run paged again, once per run.
# "ignore" keeps the alarm's state through empty periods instead: a job's estimate only grows
# (worker-seconds are only ever added) and so does its actual cost, so once above the budget
# it stays above, and the alarm notifies once per breach whatever the schedule, with no window
# to derive from a cron expression. It still starts in INSUFFICIENT_DATA and goes OK at the
# first run below the budget. That is also why neither input is FILLed: a filled value would
# put a point in every empty period and bring back the OK-then-page-again cycle.
resource "aws_cloudwatch_metric_alarm" "cost_over_budget" {
  for_each = local.alarm_jobs

  alarm_name          = local.job_alarm_names["cost-over-budget"][each.key]
  alarm_description   = "metricskit: job ${each.key} cost (the higher of the estimated and the actual cost) above ${var.job_cost_budget_usd} USD."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.job_cost_budget_usd
  evaluation_periods  = 1
  treat_missing_data  = "ignore"
  alarm_actions       = local.alarm_actions
  tags                = var.tags

  metric_query {
    id          = "cost"
    label       = "job cost (USD): the higher of estimated and actual"
    expression  = "MAX([estimated, actual])"
    return_data = true
  }

  # The expression's inputs, by the ids it names: the job's two cost series (JobId only: the
  # cost tracker's metrics carry no other dimension).
  dynamic "metric_query" {
    for_each = { estimated = local.metric["EstimatedCost"], actual = local.metric["ActualCost"] }

    content {
      id = metric_query.key

      metric {
        namespace   = var.namespace
        metric_name = metric_query.value.name
        unit        = metric_query.value.unit
        stat        = metric_query.value.statistic
        period      = 300
        dimensions  = { (local.dim.job) = each.key }
      }
    }
  }
}
