"""Prometheus metrics, served at ``/metrics``. Each app has a registry of its own (two servers in
one test process must not share counters). The edges call the ``record_*`` methods; nothing
here knows about websockets or HTTP."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets for finals and first partials: the targets live between 0.1 and 2 s.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
INFERENCE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._inference_s = 0.0
        self._audio_in_s = 0.0
        self._define_stream_metrics(self.registry)
        self._define_model_metrics(self.registry)
        self._define_server_metrics(self.registry)

    def _define_stream_metrics(self, r: CollectorRegistry) -> None:
        self.active_sessions = Gauge(
            "streamscribe_active_sessions", "Open streaming sessions", registry=r
        )
        self.sessions = Counter("streamscribe_sessions", "Streaming sessions opened", registry=r)
        self.audio_seconds = Counter(
            "streamscribe_audio_seconds", "Seconds of audio received on streams", registry=r
        )
        self.finals = Counter(
            "streamscribe_finals", "transcript.final events sent", ["backend"], registry=r
        )
        self.partials = Counter(
            "streamscribe_partials", "transcript.partial events sent", registry=r
        )
        self.final_latency = Histogram(
            "streamscribe_final_latency_seconds",
            "Time from the end of speech (plus the silence window) to the final",
            ["backend"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.first_partial_latency = Histogram(
            "streamscribe_first_partial_latency_seconds",
            "Time from speech.started to the utterance's first partial",
            ["backend"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )

    def _define_model_metrics(self, r: CollectorRegistry) -> None:
        self.inference = Histogram(
            "streamscribe_inference_seconds",
            "Model time per request",
            ["backend", "kind"],
            buckets=INFERENCE_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "streamscribe_queue_wait_seconds",
            "Time a request waited for a worker",
            ["kind"],
            buckets=INFERENCE_BUCKETS_S,
            registry=r,
        )
        self.inference_audio_seconds = Counter(
            "streamscribe_inference_audio_seconds",
            "Seconds of audio the model was asked to transcribe",
            ["backend", "kind"],
            registry=r,
        )
        self.real_time_factor = Gauge(
            "streamscribe_real_time_factor",
            "Model seconds spent per second of stream audio received, since start",
            registry=r,
        )
        self.real_time_factor.set_function(self._real_time_factor)

    def _define_server_metrics(self, r: CollectorRegistry) -> None:
        self.errors = Counter(
            "streamscribe_errors", "Errors sent to clients, by code", ["code"], registry=r
        )
        self.http_requests = Counter(
            "streamscribe_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.load_level = Gauge(
            "streamscribe_load_level",
            "0 normal, 1 partials slowed, 2 partials paused (new sessions refused)",
            registry=r,
        )
        self.final_load = Gauge(
            "streamscribe_final_load",
            "Share of the model's time spent on finals over the load window",
            registry=r,
        )
        self.batch_size = Histogram(
            "streamscribe_batch_size",
            "Requests run together in one model call, by kind (partial, final)",
            ["kind"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=r,
        )

    def record_session_opened(self) -> None:
        self.sessions.inc()
        self.active_sessions.inc()

    def record_session_closed(self) -> None:
        self.active_sessions.dec()

    def record_audio(self, seconds: float) -> None:
        self._audio_in_s += seconds
        self.audio_seconds.inc(seconds)

    def record_final(self, backend: str, latency_s: float | None) -> None:
        self.finals.labels(backend).inc()
        if latency_s is not None:
            self.final_latency.labels(backend).observe(latency_s)

    def record_partial(self, first_latency_s: float | None, backend: str) -> None:
        self.partials.inc()
        if first_latency_s is not None:
            self.first_partial_latency.labels(backend).observe(first_latency_s)

    def record_inference(
        self, backend: str, kind: str, run_s: float, queue_s: float, audio_s: float
    ) -> None:
        self._inference_s += run_s
        self.inference.labels(backend, kind).observe(run_s)
        self.queue_wait.labels(kind).observe(queue_s)
        self.inference_audio_seconds.labels(backend, kind).inc(audio_s)

    def record_load(self, level: int, final_load: float) -> None:
        self.load_level.set(level)
        self.final_load.set(final_load)

    def record_batch(self, kind: str, size: int) -> None:
        self.batch_size.labels(kind).observe(size)

    def record_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def record_http(self, route: str, status: int) -> None:
        self.http_requests.labels(route, str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def _real_time_factor(self) -> float:
        return self._inference_s / self._audio_in_s if self._audio_in_s else 0.0
