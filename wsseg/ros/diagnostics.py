"""Processing statistics of the segment node and the diagnostics status made from them (no ROS).

The node records every processed frame (per-stage timings), every rejected input (with its
cause and message), frames dropped by the keep-latest slot and frames skipped for lack of
subscribers; :meth:`NodeStats.status` summarises a sliding window into a level, a message and
key/value pairs, which the node wraps into ``diagnostic_msgs/DiagnosticStatus``.

Levels: ERROR if an input was rejected (or a node-level error such as a failed engine reload was
recorded) since the last report, the median total time exceeds ``error_ms``, or inputs have been
arriving for ``stall_error_s`` without any frame answered or rejected (a *stall*: RGB-D streams that
never pair, a worker stuck); WARN if the median exceeds ``warn_ms`` or a stall lasts ``stall_warn_s``;
else OK.  Dropped frames (input faster than inference, by design of the keep-latest slot) are
reported as a value, not a level.
"""

from __future__ import annotations

import math
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
    """Thread-safe counters and a window of recent frames (``window`` frames, ``window_s`` seconds for rates).

    primary: the input stream whose messages are frames (``points``, or ``depth`` for RGB-D); streams: every
    input stream, so that one that never delivers shows in a stall message at 0 Hz.
    """

    def __init__(self, window: int = 100, window_s: float = 5.0, primary: str = "points",
                 streams: tuple[str, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._timings: deque[tuple[float, dict[str, float]]] = deque(maxlen=window)
        #: arrival times per input stream; ``streams`` are reported (at 0 Hz) before their first message
        self._arrivals: dict[str, deque[float]] = {s: deque(maxlen=10 * window) for s in (primary, *streams)}
        self._window = window
        self.window_s = window_s
        self.primary = primary
        self.processed = 0
        self.received = 0
        self.dropped = 0
        self.skipped_no_subscribers = 0
        self.rejected: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        self.longest_stall_s = 0.0
        self._waiting_since: float | None = None
        self._reported = {"rejected": 0, "dropped": 0, "errors": 0}

    def record_arrival(self, stream: str | None = None, now: float | None = None) -> None:
        """A message of ``stream`` arrived (``received`` counts the primary stream: points or depth)."""
        stream = stream or self.primary
        with self._lock:
            if stream == self.primary:
                self.received += 1
            arrivals = self._arrivals.setdefault(stream, deque(maxlen=10 * self._window))
            arrivals.append(time.monotonic() if now is None else now)

    def expect_output(self, now: float | None = None) -> None:
        """An input that should lead to an answer arrived (outputs have subscribers): a stall clock starts."""
        with self._lock:
            if self._waiting_since is None:
                self._waiting_since = time.monotonic() if now is None else now

    def _answered(self, now: float) -> None:
        if self._waiting_since is not None:
            self.longest_stall_s = max(self.longest_stall_s, now - self._waiting_since)
        self._waiting_since = None

    def record_frame(self, timings_ms: dict[str, float], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.processed += 1
            self._timings.append((now, dict(timings_ms)))
            self._answered(now)

    def record_rejected(self, cause: str, message: str, now: float | None = None) -> None:
        with self._lock:
            self.rejected[cause] += 1
            self.last_error = message
            self._answered(time.monotonic() if now is None else now)

    def record_error(self, kind: str, message: str) -> None:
        """A node-level error that is not a frame (e.g. ``engine_reload``): counted, reported as ERROR once."""
        with self._lock:
            self.errors[kind] += 1
            self.last_error = message

    def record_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def record_skipped(self) -> None:
        with self._lock:
            self.skipped_no_subscribers += 1

    def status(self, warn_ms: float, error_ms: float, engine: dict[str, str], now: float | None = None,
               stall_warn_s: float = math.inf, stall_error_s: float = math.inf,
               extra: dict[str, str] | None = None) -> Status:
        """Summary since the last call (levels) and over the window (timings, rates); ``extra`` values are added."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for stamp, t in self._timings if now - stamp <= self.window_s]
            frame_times = [stamp for stamp, _ in self._timings if now - stamp <= self.window_s]
            rates = {stream: _rate([a for a in arrivals if now - a <= self.window_s], now, self.window_s)
                     for stream, arrivals in self._arrivals.items()}
            stalled_s = 0.0 if self._waiting_since is None else now - self._waiting_since
            rejected_total = sum(self.rejected.values())
            errors_total = sum(self.errors.values())
            new_rejected = rejected_total - self._reported["rejected"]
            new_errors = errors_total - self._reported["errors"]
            new_dropped = self.dropped - self._reported["dropped"]
            self._reported = {"rejected": rejected_total, "dropped": self.dropped, "errors": errors_total}
            values: dict[str, str] = {
                "frames_received": str(self.received),
                "frames_processed": str(self.processed),
                "frames_dropped": str(self.dropped),
                "frames_rejected": str(rejected_total),
                "frames_skipped_no_subscribers": str(self.skipped_no_subscribers),
                "rejected_by_cause": ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none",
                "errors": ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none",
                "last_error": self.last_error or "none",
                "stalled_s": f"{stalled_s:.1f}",
                "longest_stall_s": f"{max(self.longest_stall_s, stalled_s):.1f}",
            }
        values["frames_dropped_since_last_report"] = str(new_dropped)
        values["rate_hz"] = f"{_rate(frame_times, now, self.window_s):.2f}"
        values["input_rate_hz"] = f"{rates.get(self.primary, 0.0):.2f}"
        for stream, rate in sorted(rates.items()):
            if stream != self.primary:
                values[f"input_rate_hz_{stream}"] = f"{rate:.2f}"
        values.update({f"engine_{k}": v for k, v in engine.items()})
        values.update(extra or {})
        median_total = None
        for stage in STAGES:
            samples = np.array([t[stage] for t in recent if stage in t], dtype=np.float64)
            if samples.size:
                values[f"{stage}_ms_median"] = f"{np.median(samples):.2f}"
                values[f"{stage}_ms_p95"] = f"{np.percentile(samples, 95):.2f}"
                if stage == "total":
                    median_total = float(np.median(samples))
        level, message = OK, "segmenting" if recent else _idle_message(rates, stalled_s > 0)
        if median_total is not None and median_total > warn_ms:
            level, message = WARN, f"median processing time {median_total:.1f} ms > warn budget {warn_ms:.0f} ms"
        if median_total is not None and median_total > error_ms:
            level, message = ERROR, f"median processing time {median_total:.1f} ms > error budget {error_ms:.0f} ms"
        if stalled_s >= min(stall_warn_s, stall_error_s):
            inputs = ", ".join(f"{stream} {rate:.1f} Hz" for stream, rate in sorted(rates.items()))
            level = ERROR if stalled_s >= stall_error_s else max(level, WARN)
            message = (f"inputs arrive ({inputs}) but no frame answered for {stalled_s:.1f} s"
                       + (" (RGB-D streams not paired: check their stamps and sync_slop_s)"
                          if len(rates) > 1 else ""))
        if new_errors > 0:
            level, message = ERROR, f"{new_errors} error(s); last: {values['last_error']}"
        if new_rejected > 0:
            level, message = ERROR, f"{new_rejected} input frame(s) rejected; last: {values['last_error']}"
        return Status(level, message, values)


def _idle_message(rates: dict[str, float], waiting: bool) -> str:
    if waiting:
        return "waiting for the next frame"
    return "idle (inputs arrive but outputs have no subscriber)" if any(rates.values()) else "idle (no input)"


def _rate(stamps: list[float], now: float, window_s: float) -> float:
    if len(stamps) < 2:
        return 0.0
    span = max(now - stamps[0], stamps[-1] - stamps[0])
    return (len(stamps) - 1) / span if span > 0 else 0.0
