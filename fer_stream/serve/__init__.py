"""Watching a running analysis: the ``--serve`` HTTP server (monitor), Prometheus metrics and the dashboard."""
