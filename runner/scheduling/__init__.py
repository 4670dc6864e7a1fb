"""Scheduling: the embedded scheduler that starts jobs with a `schedule` through the engine."""
