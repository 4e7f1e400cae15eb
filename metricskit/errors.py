"""The exceptions metricskit raises, and the policy for when it raises them.

Error policy (see docs/OPERATIONS.md):

* Programmer mistakes found at definition time (a bad metric name, unit, dimension or
  argument) raise a subclass of :class:`MetricsKitError` whose message lists what is allowed.
* Bad *values* at record time (NaN, inf, negative counts) never raise: they are dropped,
  counted in the ``MetricskitDroppedValues`` self-metric and warned about once.
* Network and AWS failures never raise into the worker: they are logged, retried and kept.
"""

from __future__ import annotations


class MetricsKitError(Exception):
    """Base class of every exception metricskit raises on purpose."""


class InvalidMetricError(MetricsKitError, ValueError):
    """A metric name, unit, namespace or kind is not one CloudWatch accepts."""


class InvalidDimensionError(MetricsKitError, ValueError):
    """A dimension name or value is invalid, or a series has too many dimensions."""


class ConfigurationError(MetricsKitError, ValueError):
    """A constructor argument is outside what metricskit accepts."""


class UnreadableInputError(MetricsKitError, OSError):
    """A file or object to count cannot be read to its end: a compressed stream that is
    truncated or holds invalid data. An ``OSError`` too, like the read failures it stands for
    (the CLI answers it with exit status 1)."""


class JobClosedError(MetricsKitError, RuntimeError):
    """Kept so existing ``except JobClosedError`` clauses still import; no longer raised.

    ``job.stage()`` on a closed job returns a stage and logs a warning instead: after
    construction, instrumentation never raises into the worker.
    """
