"""Server metrics in the Prometheus text format (version 0.0.4), without a client library.

One :class:`Metrics` object per app (no module-level registry): counters, gauges and
histograms keyed by label values, updated from the event loop and the engine thread
under one lock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class _Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    label_names: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    values: dict = field(default_factory=dict)  # label values -> float, or [bucket counts, sum, count]


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self.counter("valle2_requests_total", "HTTP requests by route and status code", ("route", "method", "status"))
        self.histogram("valle2_request_duration_seconds", "HTTP request latency (to the last byte for streams)",
                       ("route",), LATENCY_BUCKETS)
        self.histogram("valle2_time_to_first_audio_seconds", "speech requests: from arrival to the first audio sent",
                       ("stream",), LATENCY_BUCKETS)
        self.gauge("valle2_queue_depth", "sentences waiting for a decode batch")
        self.gauge("valle2_requests_in_flight", "speech requests admitted and not finished")
        self.counter("valle2_audio_seconds_total", "seconds of audio generated")
        self.counter("valle2_sentences_total", "sentences synthesised")
        self.counter("valle2_decode_batches_total", "batched decodes run (one model.synthesize_batch call each)")
        self.histogram("valle2_decode_batch_size", "sentences per decode batch", (), BATCH_BUCKETS)
        self.histogram("valle2_decode_batch_seconds", "wall time of one decode batch", (), LATENCY_BUCKETS)
        self.counter("valle2_rejected_total", "speech requests refused before decoding", ("reason",))

    # -- declaration -------------------------------------------------------------------
    def counter(self, name, help, labels=()):
        self._families[name] = _Family(name, "counter", help, tuple(labels))

    def gauge(self, name, help, labels=()):
        self._families[name] = _Family(name, "gauge", help, tuple(labels))

    def histogram(self, name, help, labels, buckets):
        self._families[name] = _Family(name, "histogram", help, tuple(labels), tuple(buckets))

    # -- updates -------------------------------------------------------------------------
    def inc(self, name: str, amount: float = 1.0, **labels) -> None:
        fam = self._families[name]
        key = self._key(fam, labels)
        with self._lock:
            fam.values[key] = fam.values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels) -> None:
        fam = self._families[name]
        key = self._key(fam, labels)
        with self._lock:
            fam.values[key] = float(value)

    def observe(self, name: str, value: float, **labels) -> None:
        fam = self._families[name]
        key = self._key(fam, labels)
        with self._lock:
            counts, total, n = fam.values.get(key, ([0] * len(fam.buckets), 0.0, 0))
            counts = [c + (value <= b) for c, b in zip(counts, fam.buckets)]
            fam.values[key] = (counts, total + value, n + 1)

    def value(self, name: str, **labels) -> float:
        """A counter's or gauge's current value (a histogram's count); 0 if never set."""
        fam = self._families[name]
        with self._lock:
            v = fam.values.get(self._key(fam, labels), 0.0)
        return v[2] if fam.kind == "histogram" and v else v

    @staticmethod
    def _key(fam: _Family, labels: dict) -> tuple:
        if set(labels) != set(fam.label_names):
            raise ValueError(f"{fam.name} takes labels {fam.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in fam.label_names)

    # -- exposition ----------------------------------------------------------------------
    def render(self) -> str:
        lines = []
        with self._lock:
            for fam in self._families.values():
                lines.append(f"# HELP {fam.name} {fam.help}")
                lines.append(f"# TYPE {fam.name} {fam.kind}")
                if fam.kind != "histogram":
                    if not fam.values and not fam.label_names:
                        lines.append(f"{fam.name} 0")
                    for key, v in sorted(fam.values.items()):
                        lines.append(f"{fam.name}{_labels(fam.label_names, key)} {_num(v)}")
                    continue
                items = sorted(fam.values.items()) or ([((), ([0] * len(fam.buckets), 0.0, 0))] if not fam.label_names else [])
                for key, (counts, total, n) in items:
                    for b, c in zip(fam.buckets, counts):
                        lines.append(f"{fam.name}_bucket{_labels(fam.label_names + ('le',), key + (_num(b),))} {c}")
                    lines.append(f"{fam.name}_bucket{_labels(fam.label_names + ('le',), key + ('+Inf',))} {n}")
                    lines.append(f"{fam.name}_sum{_labels(fam.label_names, key)} {_num(total)}")
                    lines.append(f"{fam.name}_count{_labels(fam.label_names, key)} {n}")
        return "\n".join(lines) + "\n"


def _labels(names, values) -> str:
    if not names:
        return ""
    esc = (v.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, esc)) + "}"


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if float(v).is_integer() else repr(float(v))
