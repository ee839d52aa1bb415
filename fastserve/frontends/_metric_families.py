"""The metric families fastserve exports and their buckets (CONTRACT §6: names, types and
labels are fixed)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TIME_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The metric families of one process (CONTRACT §6: names, types and labels are fixed)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fastserve_requests_total", "Requests answered, by model, version, API and status",
            ["model", "version", "api", "code"], registry=registry)
        self.duration = Histogram(
            "fastserve_request_duration_seconds",
            "Inference time per request: waiting in the queue, running the model, and "
            "from submission to answer", ["model", "version", "stage"], buckets=TIME_BUCKETS,
            registry=registry)
        self.batch_size = Histogram(
            "fastserve_batch_size", "Rows per batch the model ran", ["model", "version"],
            buckets=BATCH_BUCKETS, registry=registry)
        self.queue_depth = Gauge(
            "fastserve_queue_depth", "Requests waiting in a version's queue",
            ["model", "version"], registry=registry, multiprocess_mode="livesum")
        self.model_state = Gauge(
            "fastserve_model_state", "1 for the version's current state, 0 for the others",
            ["model", "version", "state"], registry=registry, multiprocess_mode="livemax")
        self.cancelled = Counter(
            "fastserve_requests_cancelled_total",
            "Queued requests dropped because their client went away", ["model", "version"],
            registry=registry)
