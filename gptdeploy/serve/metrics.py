"""What the server tells Prometheus: requests by status, tokens in and out, the engine's queue and busy slots, and
latency histograms. Each app has its own registry, so several apps (tests, Ray replicas) never share counters."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gptdeploy.engine import Engine

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("gptdeploy_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=registry)  # fmt: skip
        self.finished = Counter("gptdeploy_finished_generations", "Generations ended, by reason (stop, length, "
                                "cancelled, error)", ["reason"], registry=registry)  # fmt: skip
        self.prompt_tokens = Counter("gptdeploy_prompt_tokens", "Prompt tokens admitted", registry=registry)
        self.generated_tokens = Counter("gptdeploy_generation_tokens", "Tokens generated", registry=registry)
        self.queue_depth = Gauge("gptdeploy_queue_depth", "Requests waiting for a slot", registry=registry)
        self.active_slots = Gauge("gptdeploy_active_slots", "Slots holding a request", registry=registry)
        self.time_to_first_token = Histogram("gptdeploy_time_to_first_token_seconds", "From arrival to the first "
                                             "token (queueing and prefill)", buckets=LATENCY_BUCKETS,
                                             registry=registry)  # fmt: skip
        self.inter_token = Histogram("gptdeploy_inter_token_latency_seconds", "Between consecutive tokens of a "
                                     "request, as the server sees them", buckets=LATENCY_BUCKETS,
                                     registry=registry)  # fmt: skip

    def watch(self, engine: Engine) -> None:
        """Read the queue and slot gauges from the engine whenever they are scraped."""
        self.queue_depth.set_function(lambda: len(engine.waiting))
        self.active_slots.set_function(lambda: len(engine.active))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
