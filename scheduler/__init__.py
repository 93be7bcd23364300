"""Scheduled pushes: jobs (jobs.py), delivery (delivery.py), the single-active lease and the runner."""
