"""Prometheus metrics of a run, with prometheus-client.

Counters and histograms are updated where things happen (a frame written, a batch classified);
per-source states that already live in other objects (drops, reconnects, queue depths, whether a
camera is up) are read when Prometheus scrapes, by a collector, so nothing is counted twice.

>>> m = Metrics()
>>> m.frame_out("door", faces=[], latency=0.02)
>>> b"fer_stream_frames_total" in m.exposition()
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fer_stream.frames import Face
from fer_stream.health import SourceState

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32)


class _SourceState(Collector):
    """Reads each registered source's drops, reconnects, queue depths and state at scrape time."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], SourceState]] = {}

    def collect(self) -> Iterable[Metric]:
        dropped = CounterMetricFamily("fer_stream_dropped_frames", "Frames replaced by newer ones before detection", labels=["source"])
        reconnects = CounterMetricFamily("fer_stream_reconnects", "Times a source streamed again after an outage", labels=["source"])
        failures = CounterMetricFamily("fer_stream_connect_failures", "Failed connections and lost streams", labels=["source"])
        up = GaugeMetricFamily("fer_stream_source_up", "1 while the source delivers frames, else 0", labels=["source"])
        depth = GaugeMetricFamily("fer_stream_queue_depth", "Items waiting in each pipeline queue", labels=["source", "queue"])
        for sid, read in list(self.sources.items()):
            s = read()
            dropped.add_metric([sid], s.dropped)
            reconnects.add_metric([sid], s.reconnects)
            failures.add_metric([sid], s.failures)
            up.add_metric([sid], 1.0 if s.up else 0.0)
            for name, n in s.queues.items():
                depth.add_metric([sid, name], n)
        yield from (dropped, reconnects, failures, up, depth)


class _Publishers(Collector):
    """Reads each publisher's counts (sent, dropped, retries, queued) and its queue at scrape time."""

    def __init__(self) -> None:
        self.publishers: dict[str, Callable[[], dict[str, int]]] = {}

    def collect(self) -> Iterable[Metric]:
        sent = CounterMetricFamily("fer_stream_published", "Episode and alert records delivered", labels=["publisher"])
        dropped = CounterMetricFamily("fer_stream_publish_dropped", "Records dropped: the queue was full", labels=["publisher"])
        retries = CounterMetricFamily("fer_stream_publish_retries", "Deliveries tried again: receiver away", labels=["publisher"])
        waiting = GaugeMetricFamily("fer_stream_publish_queue", "Records waiting for delivery", labels=["publisher"])
        for name, read in list(self.publishers.items()):
            c = read()
            sent.add_metric([name], c.get("sent", 0))
            dropped.add_metric([name], c.get("dropped", 0))
            retries.add_metric([name], c.get("retries", 0))
            waiting.add_metric([name], c.get("waiting", 0))
        yield from (sent, dropped, retries, waiting)


class Metrics:
    """Every fer-stream metric in one registry; :meth:`exposition` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("fer_stream_frames", "Annotated frames written", ["source"], registry=r)
        self.faces = Counter("fer_stream_faces", "Faces detected in written frames", ["source"], registry=r)
        self.predictions = Counter("fer_stream_predictions", "Faces written with a prediction, by label", ["source", "label"], registry=r)
        self.flagged = Counter("fer_stream_flagged", "Predictions under the confidence threshold", ["source"], registry=r)
        self.unusable = Counter("fer_stream_unusable_faces", "Faces too small, blurry or unsure to classify", ["source"], registry=r)
        self.rejected_boxes = Counter(
            "fer_stream_rejected_boxes", "Detector boxes the face landmark model found to hold no face", ["source"], registry=r
        )
        self.batch_size = Histogram("fer_stream_batch_size", "Faces per classifier batch", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("fer_stream_batch_seconds", "Time to classify one batch", registry=r)
        self.latency = Histogram(
            "fer_stream_latency_seconds", "Frame capture to annotated output", ["source"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.ready = Gauge("fer_stream_ready", "0 while models load and sources open, then 1", registry=r)
        self.ready.set(1)
        self._state = _SourceState()
        r.register(self._state)
        self._publishers = _Publishers()
        r.register(self._publishers)

    def watch_publisher(self, name: str, counts: Callable[[], dict[str, int]]) -> None:
        """Report publisher ``name``'s ``counts()`` at each scrape."""
        self._publishers.publishers[name] = counts

    def watch(self, source_id: str, read: Callable[[], SourceState]) -> None:
        """Report ``read()`` for ``source_id`` at each scrape."""
        self._state.sources[source_id] = read

    def frame_out(self, source_id: str, faces: Sequence[Face], latency: float) -> None:
        self.frames.labels(source_id).inc()
        self.latency.labels(source_id).observe(latency)
        if faces:
            self.faces.labels(source_id).inc(len(faces))
            for face in faces:
                p = face.prediction
                if not face.usable:
                    self.unusable.labels(source_id).inc()
                elif p is not None:
                    self.predictions.labels(source_id, p.label).inc()
                    if p.flagged:
                        self.flagged.labels(source_id).inc()

    def rejected(self, source_id: str, boxes: int) -> None:
        self.rejected_boxes.labels(source_id).inc(boxes)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
