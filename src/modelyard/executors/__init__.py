"""Executors: where and how a job's supervisor runs, and what the machine can hold (``capacity``)."""
