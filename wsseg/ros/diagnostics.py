"""Processing statistics of the segment node and the diagnostics status made from them (no ROS).

The node records every processed frame (per-stage timings), every rejected input (with its
cause and message), frames dropped by the keep-latest slot and frames skipped for lack of
subscribers; :meth:`NodeStats.status` summarises a sliding window into a level, a message and
key/value pairs, which the node wraps into ``diagnostic_msgs/DiagnosticStatus``.

Levels: ERROR if an input was rejected since the last report or the median total time exceeds
``error_ms``; WARN if it exceeds ``warn_ms``; else OK.  Dropped frames (input faster than
inference, by design of the keep-latest slot) are reported as a value, not a level.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

OK, WARN, ERROR = 0, 1, 2
STAGES = ("pre", "inference", "post", "total")


@dataclass(frozen=True)
class Status:
    level: int
    message: str
    values: dict[str, str]


class NodeStats:
    """Thread-safe counters and a window of recent frames (``window`` frames, ``window_s`` seconds for rates)."""

    def __init__(self, window: int = 100, window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._timings: deque[tuple[float, dict[str, float]]] = deque(maxlen=window)
        self._arrivals: deque[float] = deque(maxlen=10 * window)
        self.window_s = window_s
        self.processed = 0
        self.received = 0
        self.dropped = 0
        self.skipped_no_subscribers = 0
        self.rejected: Counter[str] = Counter()
        self.last_error = ""
        self._reported = {"rejected": 0, "dropped": 0}

    def record_arrival(self, now: float | None = None) -> None:
        with self._lock:
            self.received += 1
            self._arrivals.append(time.monotonic() if now is None else now)

    def record_frame(self, timings_ms: dict[str, float], now: float | None = None) -> None:
        with self._lock:
            self.processed += 1
            self._timings.append((time.monotonic() if now is None else now, dict(timings_ms)))

    def record_rejected(self, cause: str, message: str) -> None:
        with self._lock:
            self.rejected[cause] += 1
            self.last_error = message

    def record_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def record_skipped(self) -> None:
        with self._lock:
            self.skipped_no_subscribers += 1

    def status(self, warn_ms: float, error_ms: float, engine: dict[str, str], now: float | None = None) -> Status:
        """Summary since the last call (levels) and over the window (timings, rates)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for stamp, t in self._timings if now - stamp <= self.window_s]
            frame_times = [stamp for stamp, _ in self._timings if now - stamp <= self.window_s]
            arrivals = [a for a in self._arrivals if now - a <= self.window_s]
            rejected_total = sum(self.rejected.values())
            new_rejected = rejected_total - self._reported["rejected"]
            new_dropped = self.dropped - self._reported["dropped"]
            self._reported = {"rejected": rejected_total, "dropped": self.dropped}
            values: dict[str, str] = {
                "frames_received": str(self.received),
                "frames_processed": str(self.processed),
                "frames_dropped": str(self.dropped),
                "frames_rejected": str(rejected_total),
                "frames_skipped_no_subscribers": str(self.skipped_no_subscribers),
                "rejected_by_cause": ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none",
                "last_error": self.last_error or "none",
            }
        values["frames_dropped_since_last_report"] = str(new_dropped)
        values["rate_hz"] = f"{_rate(frame_times, now, self.window_s):.2f}"
        values["input_rate_hz"] = f"{_rate(arrivals, now, self.window_s):.2f}"
        values.update({f"engine_{k}": v for k, v in engine.items()})
        median_total = None
        for stage in STAGES:
            samples = np.array([t[stage] for t in recent if stage in t], dtype=np.float64)
            if samples.size:
                values[f"{stage}_ms_median"] = f"{np.median(samples):.2f}"
                values[f"{stage}_ms_p95"] = f"{np.percentile(samples, 95):.2f}"
                if stage == "total":
                    median_total = float(np.median(samples))
        level, message = OK, "segmenting" if recent else "idle (no input or no subscriber)"
        if median_total is not None and median_total > warn_ms:
            level, message = WARN, f"median processing time {median_total:.1f} ms > warn budget {warn_ms:.0f} ms"
        if median_total is not None and median_total > error_ms:
            level, message = ERROR, f"median processing time {median_total:.1f} ms > error budget {error_ms:.0f} ms"
        if new_rejected > 0:
            level, message = ERROR, f"{new_rejected} input frame(s) rejected; last: {values['last_error']}"
        return Status(level, message, values)


def _rate(stamps: list[float], now: float, window_s: float) -> float:
    if len(stamps) < 2:
        return 0.0
    span = max(now - stamps[0], stamps[-1] - stamps[0])
    return (len(stamps) - 1) / span if span > 0 else 0.0
