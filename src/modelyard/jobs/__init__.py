"""The domain: job specs, resources, states and the metric protocol. Pure; no I/O."""
from modelyard.jobs.metrics import MetricPoint, format_metric_line, parse_metric_line
from modelyard.jobs.spec import JobSpec, Resources
from modelyard.jobs.states import TRANSITIONS, JobState, TerminationReason

__all__ = [
    "JobSpec", "Resources", "JobState", "TRANSITIONS", "TerminationReason",
    "MetricPoint", "parse_metric_line", "format_metric_line",
]
