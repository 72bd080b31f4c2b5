"""Scheduling: a pure policy (policy.py) and the loop that applies it (loop.py)."""
