# One dashboard per namespace. A JobId dashboard variable (a "property" variable) rewrites the
# JobId dimension of every widget, so the same dashboard serves every job.
# Layout: CloudWatch's 24-column grid, a text header, a summary row, then detail rows.

locals {
  # Grid sizes, named so the layout reads as rows (cdk-monitoring-constructs' size.ts idea).
  grid_width     = 24 # CloudWatch's grid; every row below fills it exactly
  full_width     = local.grid_width
  half_width     = local.grid_width / 2
  third_width    = local.grid_width / 3
  quarter_width  = local.grid_width / 4
  summary_width  = 4 # progress, records done/total and ETA tiles
  header_height  = 2
  summary_height = 5
  detail_height  = 6
  alarm_height   = 3

  row_y_summary = local.header_height
  row_y_detail1 = local.row_y_summary + local.summary_height
  row_y_detail2 = local.row_y_detail1 + local.detail_height
  row_y_cost    = local.row_y_detail2 + local.detail_height
  row_y_alarms  = local.row_y_cost + local.detail_height

  period = var.dashboard_period_seconds

  # Periods under a minute exist only for high-resolution data (StorageResolution 1, which
  # high_resolution makes the workers publish), and CloudWatch returns it at such periods only
  # for its last 3 hours; older data comes at multiples of 60 s or not at all. So a sub-minute
  # dashboard opens on the last 3 hours, where every point it asks for exists.
  # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricStat.html
  sub_minute_period = local.period < 60
  high_res_window   = "-PT3H"
  dashboard_start   = local.sub_minute_period ? local.high_res_window : "-PT6H"

  # [namespace, metric name, JobId, <default job>, <own dimensions>...] for every catalog
  # metric keyed by JobId (own dimensions only on the library's series, see main.tf).
  # Indexing local.metric fails the plan for a name the catalog does not define.
  job_metric = {
    for name, m in local.metric : name => concat(
      [var.namespace, m.name, local.dim.job, var.default_job_id],
      contains(local.own_dimension_metrics, name) ? local.own_dimension_pairs : [],
    )
    if contains(m.dimensions, local.dim.job)
  }

  # CloudWatch's limit on a search query (the text between the quotes of SEARCH('...'), and a
  # variable's search): 1024 characters, checked by a precondition below.
  search_query_max_length = 1024
  job_id_search           = "{\"${var.namespace}\",${local.dim.job}${local.own_dimension_schema}} MetricName=\"${local.metric["RecordsProcessed"].name}\"${local.own_dimension_terms}"
  stage_search            = "{\"${var.namespace}\",${local.dim.job},${local.dim.stage}${local.own_dimension_schema}} MetricName=\"${local.metric["ProgressPercentage"].name}\"${local.own_dimension_terms}"
  search_queries = merge(
    var.job_id_input_type == "select" ? { "the JobId drop-down's search" = local.job_id_search } : {},
    length(var.stage_names) == 0 ? { "the per-stage progress SEARCH" = local.stage_search } : {},
  )
  search_queries_too_long = { for what, query in local.search_queries : what => length(query) if length(query) > local.search_query_max_length }

  job_id_variable = merge(
    {
      type         = "property"
      property     = local.dim.job
      inputType    = var.job_id_input_type
      id           = local.dim.job
      label        = local.dim.job
      defaultValue = var.default_job_id
      visible      = true
    },
    # A drop-down lists the JobIds that published records in the namespace.
    {
      for key, value in {
        search       = local.job_id_search
        populateFrom = local.dim.job
      } : key => value if var.job_id_input_type == "select"
    },
  )

  # Either one line per named stage, or (no names given) a SEARCH expression: dashboards may
  # use SEARCH (alarms may not); it finds every stage of every job and ignores the JobId box.
  # Indexing a tuple picks a branch even though the two branches have different shapes.
  stage_metrics = [
    [
      for stage in var.stage_names : concat(
        local.job_metric["ProgressPercentage"],
        [local.dim.stage, stage, { stat = local.metric["ProgressPercentage"].statistic, label = stage }],
      )
    ],
    [[{
      id         = "stages"
      expression = "SEARCH('${local.stage_search}', '${local.metric["ProgressPercentage"].statistic}', ${local.period})"
    }]],
  ][length(var.stage_names) > 0 ? 0 : 1]

  # Average and p99 of every latency distribution, statistics from the catalog.
  latency_metrics = [
    for pair in setproduct(var.latency_metric_names, local.distribution.statistics) :
    concat(
      [var.namespace, pair[0], local.dim.job, var.default_job_id],
      local.own_dimension_pairs,
      [{ stat = pair[1], label = "${pair[0]} ${pair[1]}" }],
    )
  ]

  # How the JobId variable is set, in the header's words: it must match job_id_input_type.
  job_id_how = {
    input  = "Type a **JobId** in the box at the top of the dashboard"
    select = "Pick a **JobId** from the drop-down at the top of the dashboard (it lists the JobIds that published records in the last two weeks)"
  }

  header_markdown = join("\n", [
    "# metricskit: ${var.namespace}",
    "${local.job_id_how[var.job_id_input_type]} to switch every job widget to that job. Throughput is summed over all workers; progress, records done and ETA are job-wide when the job table `${local.job_table_name}` is on (METRICSKIT_JOB_TABLE). Costs come from the cost tracker (`${local.function_name}`); see docs/DASHBOARD_GUIDE.md.",
  ])

  widget_header = {
    type   = "text"
    x      = 0
    y      = 0
    width  = local.full_width
    height = local.header_height
    properties = {
      markdown = local.header_markdown
    }
  }

  # The metric widgets, row by row: where each sits on the grid and what it shows.
  # widgets_metric (below) adds the fields every metric widget shares.
  widgets_summary = [
    {
      x      = 0
      y      = local.row_y_summary
      width  = local.half_width
      height = local.summary_height
      properties = {
        title = "Throughput (records/s, all workers)"
        view  = "timeSeries"
        # RecordsProcessed is a delta that every worker adds to the same JobId series, so its
        # Sum per period is job-wide; dividing by the period gives records per second.
        metrics = [
          concat(local.job_metric["RecordsProcessed"], [{ id = "processed", stat = local.metric["RecordsProcessed"].statistic, visible = false }]),
          [{ id = "throughput", expression = "SUM([processed]) / PERIOD(processed)", label = "records/s (job)" }],
          concat(local.job_metric["RecordsPerSecond"], [{ stat = local.metric["RecordsPerSecond"].statistic, label = "records/s (average worker)" }]),
        ]
        yAxis = { left = { min = 0, label = local.metric["RecordsPerSecond"].unit, showUnits = false } }
      }
    },
    {
      x      = local.half_width
      y      = local.row_y_summary
      width  = local.summary_width
      height = local.summary_height
      properties = {
        title   = "Progress (%)"
        view    = "gauge"
        stat    = local.metric["ProgressPercentage"].statistic
        metrics = [concat(local.job_metric["ProgressPercentage"], [{ label = "progress" }])]
        yAxis   = { left = { min = 0, max = 100 } }
      }
    },
    {
      x      = local.half_width + local.summary_width
      y      = local.row_y_summary
      width  = local.summary_width
      height = local.summary_height
      properties = {
        title = "Records done / total"
        view  = "singleValue"
        metrics = [
          concat(local.job_metric["RecordsDone"], [{ stat = local.metric["RecordsDone"].statistic, label = "done" }]),
          concat(local.job_metric["RecordsTotal"], [{ stat = local.metric["RecordsTotal"].statistic, label = "total" }]),
        ]
      }
    },
    {
      x      = local.half_width + 2 * local.summary_width
      y      = local.row_y_summary
      width  = local.summary_width
      height = local.summary_height
      properties = {
        title = "ETA"
        view  = "singleValue"
        metrics = [
          concat(local.job_metric["ETASeconds"], [{ stat = local.metric["ETASeconds"].statistic, label = "seconds to completion" }]),
          # What the stalled alarm reads: 1 once the job closed as completed.
          concat(local.job_metric["JobCompleted"], [{ stat = local.metric["JobCompleted"].statistic, label = "completed (1 = yes)" }]),
        ]
      }
    },
  ]

  widgets_detail = concat(
    length(local.latency_metrics) == 0 ? [] : [{
      x      = 0
      y      = local.row_y_detail1
      width  = local.half_width
      height = local.detail_height
      properties = {
        title   = "Latency (${local.distribution.unit}): average and p99"
        view    = "timeSeries"
        metrics = local.latency_metrics
        yAxis   = { left = { min = 0, label = local.distribution.unit, showUnits = false } }
      }
    }],
    [
      {
        x      = local.half_width
        y      = local.row_y_detail1
        width  = local.quarter_width
        height = local.detail_height
        properties = {
          title  = "Errors and retries (sum over 5 min)"
          view   = "timeSeries"
          period = 300
          metrics = [
            concat(local.job_metric["ErrorCount"], [{ stat = local.metric["ErrorCount"].statistic, label = "errors" }]),
            concat(local.job_metric["RetryCount"], [{ stat = local.metric["RetryCount"].statistic, label = "retries" }]),
          ]
          yAxis = { left = { min = 0 } }
        }
      },
      {
        x      = local.half_width + local.quarter_width
        y      = local.row_y_detail1
        width  = local.quarter_width
        height = local.detail_height
        properties = {
          title   = "Checkpoints"
          view    = "timeSeries"
          stat    = local.metric["CheckpointCount"].statistic
          metrics = [concat(local.job_metric["CheckpointCount"], [{ label = "checkpoints" }])]
          yAxis   = { left = { min = 0 } }
        }
      },
      {
        x      = 0
        y      = local.row_y_detail2
        width  = local.half_width
        height = local.detail_height
        properties = {
          title   = "Progress per stage (%)"
          view    = "timeSeries"
          metrics = local.stage_metrics
          yAxis   = { left = { min = 0, max = 100 } }
        }
      },
      {
        x      = local.half_width
        y      = local.row_y_detail2
        width  = local.half_width
        height = local.detail_height
        properties = {
          title = "metricskit health (published only when non-zero: no data is good)"
          view  = "timeSeries"
          metrics = [
            for entry in local.catalog.self_metrics :
            concat(local.job_metric[entry.name], [{ stat = entry.statistic, label = entry.name }])
          ]
          yAxis = { left = { min = 0 } }
        }
      },
    ],
  )

  widgets_cost = [
    {
      x      = 0
      y      = local.row_y_cost
      width  = local.third_width
      height = local.detail_height
      properties = {
        title  = "Job cost over time (USD)"
        view   = "timeSeries"
        period = 300
        metrics = [
          concat(local.job_metric["EstimatedCost"], [{ stat = local.metric["EstimatedCost"].statistic, label = "estimated" }]),
          concat(local.job_metric["ActualCost"], [{ stat = local.metric["ActualCost"].statistic, label = "actual (Cost Explorer)" }]),
          # 1: the tracker holds a Cost Explorer answer, with or without a figure for this job
          # (none for about its first day: Cost Explorer lags); 0: no answer (throttled,
          # denied, request budget spent).
          concat(local.job_metric["ActualCostAvailable"], [{ stat = local.metric["ActualCostAvailable"].statistic, label = "Cost Explorer answered (1 = yes)", yAxis = "right" }]),
        ]
        yAxis = { left = { min = 0, label = "USD", showUnits = false }, right = { min = 0, max = 1 } }
      }
    },
    {
      x      = local.third_width
      y      = local.row_y_cost
      width  = local.third_width
      height = local.detail_height
      properties = {
        title   = "Cost per million records (USD)"
        view    = "timeSeries"
        period  = 300
        stat    = local.metric["CostPerMillionRecords"].statistic
        metrics = [concat(local.job_metric["CostPerMillionRecords"], [{ label = "USD per 1M records" }])]
        yAxis   = { left = { min = 0, label = "USD", showUnits = false } }
      }
    },
    {
      x      = 2 * local.third_width
      y      = local.row_y_cost
      width  = local.third_width
      height = local.detail_height
      properties = {
        title  = "Month-to-date cost by CostCategory (USD)"
        view   = "bar"
        period = 3600
        metrics = [
          for category in var.cost_categories : [
            var.namespace, local.metric["MonthlyCost"].name, local.dim.cost_category, category,
            { stat = local.metric["MonthlyCost"].statistic, label = category },
          ]
        ]
      }
    },
  ]

  # What every metric widget shares, written once: its type, the dashboard's region, and the
  # dashboard period unless the widget sets its own.
  widgets_metric = [
    for widget in concat(local.widgets_summary, local.widgets_detail, local.widgets_cost) : merge(widget, {
      type       = "metric"
      properties = merge({ region = local.region, period = local.period }, widget.properties)
    })
  ]

  # An alarm widget holds 1 to 100 alarm ARNs, so the alarms (4 or more per JobId) are split
  # into full-width widgets of at most 100, stacked in dashboard order; none without alarms.
  # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
  alarms_per_widget = 100
  alarm_chunks      = chunklist(local.alarm_arns, local.alarms_per_widget)
  widgets_alarms = [
    for index, chunk in local.alarm_chunks : {
      type   = "alarm"
      x      = 0
      y      = local.row_y_alarms + index * local.alarm_height
      width  = local.full_width
      height = local.alarm_height
      properties = {
        title = length(local.alarm_chunks) == 1 ? "Alarms" : format(
          "Alarms %d-%d of %d",
          index * local.alarms_per_widget + 1,
          index * local.alarms_per_widget + length(chunk),
          length(local.alarm_arns),
        )
        alarms = chunk
      }
    }
  ]

  dashboard_body = {
    start          = local.dashboard_start
    periodOverride = "inherit"
    variables      = [local.job_id_variable]
    widgets        = concat([local.widget_header], local.widgets_metric, local.widgets_alarms)
  }
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = local.dashboard_name
  dashboard_body = jsonencode(local.dashboard_body)

  # The alarm widgets name the alarms by ARN (built from their names); create those first.
  depends_on = [
    aws_cloudwatch_metric_alarm.job_stalled,
    aws_cloudwatch_metric_alarm.error_rate,
    aws_cloudwatch_metric_alarm.latency_p99,
    aws_cloudwatch_metric_alarm.cost_over_budget,
  ]

  lifecycle {
    # The default name joins name_prefix and namespace, each valid alone, up to 288 characters.
    precondition {
      condition     = length(local.own_dimension_clashes) == 0
      error_message = "dimensions may not be named like a metric metricskit publishes (EMF writes dimensions and metrics side by side, and the library refuses them): ${join(", ", local.own_dimension_clashes)}."
    }

    precondition {
      # Sub-minute data exists only when the workers publish high-resolution metrics.
      condition     = !local.sub_minute_period || var.high_resolution
      error_message = "dashboard_period_seconds = ${local.period} needs high_resolution = true: CloudWatch keeps standard-resolution data at 60-second granularity, so a shorter period shows nothing. Set high_resolution = true (the worker_environment output then makes the workers publish high-resolution metrics, billed as such) or use a multiple of 60."
    }

    precondition {
      condition     = length(local.search_queries_too_long) == 0
      error_message = "CloudWatch allows a search query of at most ${local.search_query_max_length} characters; with this namespace and these dimensions ${join(" and ", [for what, size in local.search_queries_too_long : "${what} has ${size}"])}. Shorten the namespace or the dimension names and values, or name the stages (stage_names) and use job_id_input_type = \"input\", which need no search."
    }

    precondition {
      condition     = length(local.dashboard_name) <= local.dashboard_name_max_length
      error_message = "The dashboard name \"${local.dashboard_name}\" is ${length(local.dashboard_name)} characters; CloudWatch allows ${local.dashboard_name_max_length}. Set dashboard_name, or shorten name_prefix or namespace."
    }
  }
}
