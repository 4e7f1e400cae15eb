# Inputs of the metricskit module. Every variable is typed and described; fixed sets are
# checked with validation {} so a typo fails at plan time, not in the console.
# docs/DASHBOARD_GUIDE.md lists them in a table that a test keeps in step with this file.

# --- Identity ---------------------------------------------------------------------------------

variable "namespace" {
  description = "CloudWatch namespace the workers publish to (METRICSKIT_NAMESPACE). One module instance (and one dashboard) per namespace."
  type        = string

  validation {
    # The library's rule (metricskit/validation.py check_namespace): a namespace it refuses
    # would make the workers fall back to "metricskit", outside the dashboard and the policy.
    condition     = can(regex("^[A-Za-z0-9._/#:-]{1,255}$", var.namespace)) && !startswith(var.namespace, ":") && !startswith(var.namespace, "AWS/")
    error_message = "namespace must be 1-255 letters, digits and . - _ / # : (the library's rule), not starting with \":\" or \"AWS/\" (reserved)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (table, topic, function, role, policy, alarms). Use a distinct prefix per module instance."
  type        = string
  default     = "metricskit"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,32}$", var.name_prefix))
    error_message = "name_prefix must be 1-32 characters of A-Z, a-z, 0-9, \"-\" or \"_\"."
  }
}

variable "tags" {
  description = "Tags added to every taggable resource."
  type        = map(string)
  default     = {}
}

# --- Dashboard --------------------------------------------------------------------------------

variable "dashboard_name" {
  description = "Name of the CloudWatch dashboard. Null means \"<name_prefix>-<namespace>\" with characters CloudWatch rejects replaced by \"-\"."
  type        = string
  default     = null

  validation {
    condition     = var.dashboard_name == null || can(regex("^[A-Za-z0-9_-]{1,255}$", var.dashboard_name))
    error_message = "dashboard_name must be 1-255 characters of A-Z, a-z, 0-9, \"-\" or \"_\"."
  }
}

variable "default_job_id" {
  description = "JobId the dashboard shows when it opens; the JobId box at the top of the dashboard switches every job widget to another job."
  type        = string
  default     = "example-job"

  validation {
    condition     = length(var.default_job_id) >= 1 && length(var.default_job_id) <= 1024
    error_message = "default_job_id must be 1-1024 characters (a CloudWatch dimension value)."
  }
}

variable "job_id_input_type" {
  description = "How the dashboard's JobId variable is chosen: \"input\" (a free text box) or \"select\" (a drop-down filled by a metric search over the namespace's RecordsProcessed series)."
  type        = string
  default     = "input"

  validation {
    condition     = contains(["input", "select"], var.job_id_input_type)
    error_message = "job_id_input_type must be \"input\" or \"select\"."
  }
}

variable "dashboard_period_seconds" {
  description = "Period of the dashboard's time-series widgets in seconds (the workers' flush interval or a multiple of it). 1, 5, 10, 20 or 30 need high_resolution = true, and the dashboard then opens on the last 3 hours."
  type        = number
  default     = 60

  validation {
    # CloudWatch's periods (MetricStat Period): 1, 5, 10, 20 or 30 for high-resolution data,
    # else a multiple of 60. The link to high_resolution is a precondition (dashboard.tf).
    condition     = contains([1, 5, 10, 20, 30], var.dashboard_period_seconds) || (var.dashboard_period_seconds >= 60 && var.dashboard_period_seconds % 60 == 0)
    error_message = "dashboard_period_seconds must be 1, 5, 10, 20, 30 (with high_resolution = true) or a multiple of 60."
  }
}

variable "high_resolution" {
  description = "Have the workers publish high-resolution metrics (the worker_environment output sets METRICSKIT_HIGH_RESOLUTION=true, and METRICSKIT_FLUSH_INTERVAL to dashboard_period_seconds when that is under 60). Required for a dashboard period under 60 seconds; high-resolution custom metrics and their extra PutMetricData requests cost more."
  type        = bool
  default     = false
}

variable "dimensions" {
  description = "The workers' own dimensions (name = value), as they pass them to Job(dimensions=...) or METRICSKIT_DIMENSIONS (the worker_environment output sets it): every job widget and alarm reads the library's series with them. Empty for jobs without dimensions of their own."
  type        = map(string)
  default     = {}

  validation {
    # 30 dimensions per series, less JobId, Stage and WorkerId, which metricskit adds.
    condition     = length(var.dimensions) <= 27
    error_message = "dimensions may hold at most 27 entries (CloudWatch allows 30 per series; metricskit adds JobId, Stage and WorkerId)."
  }

  validation {
    # Names go into SEARCH schemas (double-quoted) and, bare, into its Name="value" terms;
    # values go into those terms with \ " ( ) escaped (main.tf), all within the single quotes
    # of SEARCH('...'), which nothing can escape: so no single quote. (RE2 refuses repetition
    # counts above 1000, hence length() for the 1024.)
    condition = alltrue([
      for name, value in var.dimensions :
      can(regex("^[A-Za-z0-9_.-]{1,255}$", name)) && length(value) <= 1024 && can(regex("^[ -~]+$", value)) && !strcontains(value, "'") && trimspace(value) != ""
    ])
    error_message = "Each dimension name must be 1-255 letters, digits and _ . - ; each value 1-1024 printable ASCII characters other than the single quote ('), not only spaces."
  }

  validation {
    condition     = length(setintersection(keys(var.dimensions), ["JobId", "Stage", "WorkerId", "_aws", "MetricskitDistributions"])) == 0
    error_message = "dimensions may not name JobId, Stage or WorkerId (metricskit sets them), _aws or MetricskitDistributions (members of every EMF document)."
  }
}

variable "latency_metric_names" {
  description = "Distribution metrics (job.observe()/job.timer(), unit Milliseconds) shown as average and p99 latency and watched by the p99 alarm."
  type        = list(string)
  default     = ["KafkaLatency"]

  validation {
    # The library's rule (metricskit/validation.py check_metric_name): printable ASCII.
    condition     = alltrue([for name in var.latency_metric_names : can(regex("^[ -~]{1,255}$", name))])
    error_message = "Each latency metric name must be 1-255 printable ASCII characters (the library's rule for metric names)."
  }

  validation {
    # Each name keys an alarm: a repeated one would fail the plan with "Duplicate object key".
    condition     = length(distinct(var.latency_metric_names)) == length(var.latency_metric_names)
    error_message = "latency_metric_names must not repeat a name."
  }
}

variable "stage_names" {
  description = "Stage names (job.stage(name)) for the per-stage progress widget. Empty means a SEARCH expression that finds every stage of every job in the namespace (SEARCH ignores the JobId box)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(distinct(var.stage_names)) == length(var.stage_names)
    error_message = "stage_names must not repeat a name."
  }
}

variable "cost_categories" {
  description = "CostCategory tag values shown in the month-to-date cost widget (the cost tracker publishes MonthlyCost per value, and as Untagged the spend without a CostCategory tag)."
  type        = list(string)
  default     = ["Training", "Inference", "Storage", "Orchestrator", "Untagged"]

  validation {
    condition     = length(var.cost_categories) >= 1
    error_message = "cost_categories needs at least one value."
  }
}

# --- Alarms -----------------------------------------------------------------------------------

variable "alarm_job_ids" {
  description = "JobIds to create alarms for (stalled, error rate, p99 latency per latency metric, cost over budget). CloudWatch alarms need concrete dimensions and cannot use SEARCH, so alarms are per job; remove a job when it finishes, or its stalled alarm fires."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.alarm_job_ids : length(id) >= 1 && length(id) <= 200])
    error_message = "Each alarm JobId must be 1-200 characters (it becomes part of the alarm names)."
  }

  validation {
    # Each JobId keys its alarms: a repeated one would fail the plan with "Duplicate object key".
    condition     = length(distinct(var.alarm_job_ids)) == length(var.alarm_job_ids)
    error_message = "alarm_job_ids must not repeat a JobId."
  }
}

variable "alarm_email" {
  description = "Email address subscribed to the alarm topic. Null means no subscription (subscribe your own endpoints to the sns_topic_arn output)."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be null or an email address."
  }
}

variable "sns_kms_key_arn" {
  description = "ARN of a customer managed KMS key for the alarm topic; its key policy must let cloudwatch.amazonaws.com use kms:Decrypt and kms:GenerateDataKey*. Null means the module creates such a key (the AWS managed SNS key cannot be used by CloudWatch alarms)."
  type        = string
  default     = null

  validation {
    condition     = var.sns_kms_key_arn == null || can(regex("^arn:[a-z-]+:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.sns_kms_key_arn))
    error_message = "sns_kms_key_arn must be null or a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<key-id>), not an alias or a key id."
  }
}

variable "stalled_minutes" {
  description = "The job-stalled alarm fires when no RecordsProcessed arrive in stalled_minutes of the last stalled_minutes + 1 one-minute periods and the job has not completed (a worker that stopped publishing without completing counts as stalled). One minute with records among them does not reset the count. Keep it above the workers' flush interval in minutes."
  type        = number
  default     = 15

  validation {
    # At least 2: a worker flushing every 60 s waits for each flush to end before the next
    # minute starts, so now and then a clock minute holds no flush at all; one such minute must
    # not page. At most 1439: the alarm evaluates stalled_minutes + 1 one-minute periods, and
    # CloudWatch allows at most a day of them.
    condition     = var.stalled_minutes >= 2 && var.stalled_minutes <= 1439 && floor(var.stalled_minutes) == var.stalled_minutes
    error_message = "stalled_minutes must be a whole number from 2 to 1439 (one-minute periods; the alarm evaluates one more than this, at most a day)."
  }
}

variable "error_rate_threshold_percent" {
  description = "The error-rate alarm fires when 100 x errors / (processed + errors) is above this percentage."
  type        = number
  default     = 5

  validation {
    # The rate is at most 100 % and the alarm fires when it is *above* the threshold, so a
    # threshold of 100 could never fire.
    condition     = var.error_rate_threshold_percent >= 0 && var.error_rate_threshold_percent < 100
    error_message = "error_rate_threshold_percent must be at least 0 and below 100 (the alarm fires when the rate is above it, and the rate never exceeds 100)."
  }
}

variable "error_rate_evaluation_minutes" {
  description = "Window in minutes over which the error rate is computed (one alarm period)."
  type        = number
  default     = 5

  validation {
    condition     = var.error_rate_evaluation_minutes >= 1 && var.error_rate_evaluation_minutes <= 60 && floor(var.error_rate_evaluation_minutes) == var.error_rate_evaluation_minutes
    error_message = "error_rate_evaluation_minutes must be a whole number from 1 to 60."
  }
}

variable "latency_p99_threshold_ms" {
  description = "The latency alarm fires when the p99 of a latency metric is above this many milliseconds for 3 consecutive periods."
  type        = number
  default     = 1000

  validation {
    condition     = var.latency_p99_threshold_ms > 0
    error_message = "latency_p99_threshold_ms must be positive."
  }
}

variable "job_cost_budget_usd" {
  description = "The cost alarm fires when a job's cost (USD, from the cost tracker: the higher of its EstimatedCost and its ActualCost) is above this budget."
  type        = number
  default     = 100

  validation {
    condition     = var.job_cost_budget_usd > 0
    error_message = "job_cost_budget_usd must be positive."
  }
}

# --- Job table --------------------------------------------------------------------------------

variable "job_table_name" {
  description = "Name of the DynamoDB job table (METRICSKIT_JOB_TABLE). Null means \"<name_prefix>-jobs\"."
  type        = string
  default     = null

  validation {
    condition     = var.job_table_name == null || can(regex("^[A-Za-z0-9_.-]{3,255}$", var.job_table_name))
    error_message = "job_table_name must be 3-255 characters of A-Z, a-z, 0-9, \"_\", \".\" or \"-\"."
  }
}

variable "job_table_kms_key_arn" {
  description = "ARN of a customer managed KMS key for the job table. Null means the AWS managed key for DynamoDB (encryption stays on). When set, the worker policy and the cost tracker's role may use the key through DynamoDB (kms:ViaService); its key policy must allow IAM policies to grant that."
  type        = string
  default     = null

  validation {
    # IAM policies match a KMS key only by its key ARN: with an alias ARN the grants in
    # iam.tf would never apply and every worker call on the table would be denied.
    condition     = var.job_table_kms_key_arn == null || can(regex("^arn:[a-z-]+:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.job_table_kms_key_arn))
    error_message = "job_table_kms_key_arn must be null or a KMS key ARN (arn:<partition>:kms:<region>:<account>:key/<key-id>): IAM policies cannot name a key by alias or key id."
  }
}

variable "job_table_deletion_protection" {
  description = "Turn on DynamoDB deletion protection for the job table (recommended in production; off so examples destroy cleanly)."
  type        = bool
  default     = false
}

# --- Workers ----------------------------------------------------------------------------------

variable "worker_s3_read_arns" {
  description = "S3 object ARNs (arn:aws:s3:::bucket/prefix/*) the workers read input from; the worker policy then allows s3:GetObject on them, which metricskit.count_lines and count_csv_records on s3:// URIs need (HeadObject for the ETag, then the read). Empty: the module cannot know the buckets, so grant that read elsewhere."
  type        = list(string)
  default     = []

  validation {
    # Object ARNs only: s3:GetObject has no effect on a bucket ARN (arn:aws:s3:::bucket).
    condition     = alltrue([for arn in var.worker_s3_read_arns : can(regex("^arn:[a-z-]+:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$", arn))])
    error_message = "Each worker_s3_read_arns entry must be an S3 object ARN, arn:<partition>:s3:::<bucket>/<key or pattern> (for a whole bucket: arn:aws:s3:::<bucket>/*)."
  }
}

variable "worker_job_ids" {
  description = "JobId patterns (IAM StringLike: * any run of characters, ? one character, e.g. [\"etl-nightly-*\"]) whose items the worker policy may read and write: the job items and their checkpoint#<pattern>#* items; the line- and CSV-record-count caches stay open to every worker. Null: every holder of the worker policy may read and write every job's items (one trust domain; give separate teams separate module instances, or patterns here)."
  type        = list(string)
  default     = null

  validation {
    # A "#" would reach into another kind of item (checkpoint#, linecount#, costcache#: the
    # key prefixes of metricskit/job_table.py), and an empty pattern matches nothing.
    condition     = var.worker_job_ids == null || try(length(var.worker_job_ids) >= 1 && alltrue([for p in var.worker_job_ids : length(p) >= 1 && length(p) <= 1024 && !strcontains(p, "#")]), false)
    error_message = "worker_job_ids must be null (every job) or a non-empty list of JobId patterns, each 1-1024 characters without \"#\" (IAM StringLike: * and ? are wildcards)."
  }
}

# --- Job retention ----------------------------------------------------------------------------

variable "finished_job_retention_days" {
  description = "Days a finished job's item (completed, failed or interrupted) stays in the job table before DynamoDB's TTL deletes it, with the example workers' checkpoints of completed shards (METRICSKIT_FINISHED_JOB_RETENTION_DAYS, through worker_environment). 0 keeps them forever. At least 7: the cost tracker refreshes a job's actual cost for 3 days after it ends."
  type        = number
  default     = 90

  validation {
    condition     = var.finished_job_retention_days == 0 || (var.finished_job_retention_days >= 7 && var.finished_job_retention_days <= 36500 && floor(var.finished_job_retention_days) == var.finished_job_retention_days)
    error_message = "finished_job_retention_days must be 0 (keep forever) or a whole number of days from 7 to 36500 (the cost tracker refreshes a job's actual cost for 3 days after it ends)."
  }
}

# --- Cost tracker -----------------------------------------------------------------------------

variable "cost_tracker_zip_path" {
  description = "Path of the cost tracker zip built by `python -m cost_tracker.package --out <dir>`; its SHA-256 redeploys the function whenever the code changes."
  type        = string

  validation {
    condition     = endswith(var.cost_tracker_zip_path, ".zip")
    error_message = "cost_tracker_zip_path must name a .zip file."
  }
}

variable "cost_tracker_schedule" {
  description = "EventBridge schedule expression of the cost tracker. Cost Explorer is cached, so a short schedule does not raise its cost."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    # EventBridge wants the singular unit for 1 and the plural otherwise: rate(1 hour), rate(5
    # minutes); a cron() has six fields (minutes hours day-of-month month day-of-week year), and
    # exactly one of the two day fields is "?". try(): a rate() has no fields to split.
    condition = can(regex("^rate\\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\\)$", var.cost_tracker_schedule)) || try(
      (regex("^cron\\(\\S+ \\S+ (\\S+) \\S+ (\\S+) \\S+\\)$", var.cost_tracker_schedule)[0] == "?") != (regex("^cron\\(\\S+ \\S+ (\\S+) \\S+ (\\S+) \\S+\\)$", var.cost_tracker_schedule)[1] == "?"),
      false,
    )
    error_message = "cost_tracker_schedule must be rate(1 minute|hour|day), rate(N minutes|hours|days) with N > 1, or cron(minutes hours day-of-month month day-of-week year) with \"?\" in exactly one of day-of-month and day-of-week (EventBridge's rules)."
  }
}

variable "cost_tracker_ce_refresh_hours" {
  description = "Hours between Cost Explorer refreshes (COST_TRACKER_CE_REFRESH_HOURS). 6 keeps Cost Explorer at 4 refreshes a day or fewer (a refresh is one request per page of answer)."
  type        = number
  default     = 6

  validation {
    condition     = var.cost_tracker_ce_refresh_hours >= 1 && var.cost_tracker_ce_refresh_hours <= 24 && floor(var.cost_tracker_ce_refresh_hours) == var.cost_tracker_ce_refresh_hours
    error_message = "cost_tracker_ce_refresh_hours must be a whole number from 1 to 24."
  }
}

variable "cost_tracker_ce_max_requests_per_day" {
  description = "Hard cap on Cost Explorer GetCostAndUsage requests (each page counts, $0.01 each) per UTC day (COST_TRACKER_CE_MAX_REQUESTS_PER_DAY). A refresh that would exceed it stops and keeps the previous figures; raise it when the answer takes more pages than this (large accounts, see docs/COST_TRACKING.md)."
  type        = number
  default     = 4

  validation {
    condition     = var.cost_tracker_ce_max_requests_per_day >= 1 && var.cost_tracker_ce_max_requests_per_day <= 100 && floor(var.cost_tracker_ce_max_requests_per_day) == var.cost_tracker_ce_max_requests_per_day
    error_message = "cost_tracker_ce_max_requests_per_day must be a whole number from 1 to 100 ($0.01 to $1.00 a day)."
  }
}

variable "cost_tracker_ce_lookback_days" {
  description = "Days before today the Cost Explorer query may reach for a job's start (COST_TRACKER_CE_LOOKBACK_DAYS). Job items are worker-written, so an older start is clamped to this bound and the job's ActualCost covers these days only; raise it for jobs that run longer than a month (more answer pages per refresh)."
  type        = number
  default     = 31

  validation {
    condition     = var.cost_tracker_ce_lookback_days >= 1 && var.cost_tracker_ce_lookback_days <= 365 && floor(var.cost_tracker_ce_lookback_days) == var.cost_tracker_ce_lookback_days
    error_message = "cost_tracker_ce_lookback_days must be a whole number from 1 to 365 (Cost Explorer keeps about a year of history)."
  }
}

variable "cost_tracker_pricing_overrides_json" {
  description = "Optional JSON object of hourly-rate overrides (COST_TRACKER_PRICING_OVERRIDES), shaped like cost_tracker/pricing.json as docs/COST_TRACKING.md describes. Null leaves the shipped pricing table alone."
  type        = string
  default     = null

  validation {
    # The shape cost_tracker/pricing.py check_override() accepts, which the tracker checks at
    # every run (a mismatch fails each run): a JSON object whose sections are objects, with
    # markets on_demand/spot and Fargate rates vcpu_hour/gb_hour. Rates themselves are checked
    # per profile when used. Terraform's operators do not short-circuit, so each step that
    # can fail on another shape sits in its own try().
    condition = var.cost_tracker_pricing_overrides_json == null || try(
      length(keys(jsondecode(var.cost_tracker_pricing_overrides_json))) >= 0 && alltrue([
        for key, value in jsondecode(var.cost_tracker_pricing_overrides_json) :
        contains(["region", "currency", "retrieved", "sources"], key) || (key == "profiles" && can(keys(value))) || (
          contains(["fargate", "ec2"], key) && try(alltrue([
            for market, rates in value :
            contains(["on_demand", "spot"], market) && can(keys(rates)) && (
              key == "ec2" || try(alltrue([for name in keys(rates) : contains(["vcpu_hour", "gb_hour"], name)]), false)
            )
          ]), false)
        )
      ]),
      false,
    )
    error_message = "cost_tracker_pricing_overrides_json must be null or a JSON object shaped like cost_tracker/pricing.json: {\"fargate\": {\"on_demand\"|\"spot\": {\"vcpu_hour\": rate, \"gb_hour\": rate}}, \"ec2\": {\"on_demand\"|\"spot\": {\"<instance-type>\": rate}}, \"profiles\": {\"<profile>\": rate}}, every key optional (docs/COST_TRACKING.md)."
  }
}

variable "cost_tracker_timeout_seconds" {
  description = "Timeout of the cost tracker function in seconds."
  type        = number
  default     = 120

  validation {
    condition     = var.cost_tracker_timeout_seconds >= 1 && var.cost_tracker_timeout_seconds <= 900
    error_message = "cost_tracker_timeout_seconds must be from 1 to 900."
  }
}

variable "cost_tracker_memory_mb" {
  description = "Memory of the cost tracker function in MB."
  type        = number
  default     = 256

  validation {
    condition     = var.cost_tracker_memory_mb >= 128 && var.cost_tracker_memory_mb <= 10240
    error_message = "cost_tracker_memory_mb must be from 128 to 10240."
  }
}

variable "cost_tracker_reserved_concurrency" {
  description = "Reserved concurrency of the cost tracker. 1 keeps runs from overlapping (one Cost Explorer refresh at a time); -1 reserves nothing, which accounts whose Lambda concurrency quota is still 10 need (AWS refuses any reservation there)."
  type        = number
  default     = 1

  validation {
    condition     = var.cost_tracker_reserved_concurrency == -1 || var.cost_tracker_reserved_concurrency >= 1
    error_message = "cost_tracker_reserved_concurrency must be -1 (no reservation) or at least 1."
  }
}

variable "log_retention_days" {
  description = "Retention of the cost tracker's log group in days (its EMF metrics are extracted on arrival, so the logs themselves are only for debugging)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}
