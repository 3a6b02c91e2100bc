"""The server's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Request counts, latencies, batch sizes and the model version served.

    Its own ``CollectorRegistry``: two apps in one process (tests, or two models)
    never share or clash over a metric.
    """

    def __init__(self, prometheus: Any) -> None:
        self.registry = prometheus.CollectorRegistry()
        options = {"registry": self.registry}
        self.requests = prometheus.Counter(
            "tfrs_kit_requests", "HTTP requests, by endpoint and status code.",
            ["endpoint", "status"], **options)
        self.latency = prometheus.Histogram(
            "tfrs_kit_request_latency_seconds", "Time from request to response, by endpoint.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, **options)
        self.batch_size = prometheus.Histogram(
            "tfrs_kit_batch_size", "Queries answered by one TensorFlow call.",
            buckets=_BATCH_BUCKETS, **options)
        self.model_version = prometheus.Gauge(
            "tfrs_kit_model_version", "The version being served (0: a plain index folder).",
            **options)
        self.model_loads = prometheus.Counter(
            "tfrs_kit_model_loads", "Versions loaded, warmed up and switched to.", **options)
        self.load_failures = prometheus.Counter(
            "tfrs_kit_model_load_failures",
            "New versions that failed to load or warm up (the previous one kept serving).",
            **options)
        self.model = prometheus.Info("tfrs_kit_model", "The index being served.", **options)
        self._render = prometheus.generate_latest
        self.content_type = prometheus.CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return bytes(self._render(self.registry))
