"""Approximate-time synchronisation of RGB-D streams (depth, colour, camera_info), without ROS.

Policy ("nearest to the depth stamp, within a slop"):

* each stream keeps its last ``queue_size`` messages, ordered by stamp (older ones are dropped);
* a depth message ``d`` is matched with the colour and camera_info messages whose stamps are
  nearest to ``d``'s; the match is emitted once it is *final*: each of the two other streams has
  already delivered a message stamped at or after ``d`` (so, with stamps increasing per stream,
  no later message can be nearer), and both differences are at most ``slop_s``;
* the newest depth that can be matched wins: older pending depth frames are discarded (counted
  in ``unmatched``) and every message up to the matched ones leaves the queues.  This suits a
  keep-latest consumer; a stream that stops (or lags by more than the slop) stalls output, which
  the diagnostics show as a rate of 0.

Identical stamps on the three streams (what drivers publish for one capture) match at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
STREAMS = ("depth", "color", "camera_info")


@dataclass(frozen=True)
class Matched(Generic[T]):
    """One synchronised RGB-D frame: the three messages and their stamps (ns)."""

    depth: T
    color: T
    camera_info: T
    stamp_ns: int


class ApproximateSync(Generic[T]):
    """Feed messages with :meth:`add`; it returns a :class:`Matched` frame when one becomes final."""

    def __init__(self, slop_s: float = 0.05, queue_size: int = 10) -> None:
        if slop_s < 0 or queue_size < 1:
            raise ValueError(f"ApproximateSync: slop_s {slop_s} must be >= 0 and queue_size {queue_size} >= 1")
        self.slop_ns = round(slop_s * 1e9)
        self.queues: dict[str, deque[tuple[int, T]]] = {s: deque(maxlen=queue_size) for s in STREAMS}
        self.unmatched = 0  # depth frames discarded without a match

    def add(self, stream: str, stamp_ns: int, msg: T) -> Matched[T] | None:
        if stream not in self.queues:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        queue = self.queues[stream]
        if queue and stamp_ns < queue[-1][0]:  # out of order: keep the queue sorted
            items = sorted([*queue, (stamp_ns, msg)], key=lambda item: item[0])
            queue.clear()
            queue.extend(items[-queue.maxlen:] if queue.maxlen else items)
        else:
            if stream == "depth" and queue and len(queue) == queue.maxlen:
                self.unmatched += 1
            queue.append((stamp_ns, msg))
        return self._match()

    def _nearest(self, stream: str, stamp_ns: int) -> tuple[int, int] | None:
        """(index, |difference| ns) of the message of ``stream`` nearest to ``stamp_ns``, if final."""
        queue = self.queues[stream]
        if not queue or queue[-1][0] < stamp_ns:
            return None  # a nearer message may still come
        index = min(range(len(queue)), key=lambda i: abs(queue[i][0] - stamp_ns))
        return index, abs(queue[index][0] - stamp_ns)

    def _match(self) -> Matched[T] | None:
        depth = self.queues["depth"]
        for d in range(len(depth) - 1, -1, -1):  # newest first
            stamp = depth[d][0]
            colour = self._nearest("color", stamp)
            info = self._nearest("camera_info", stamp)
            if colour is None or info is None or colour[1] > self.slop_ns or info[1] > self.slop_ns:
                continue
            matched = Matched(depth[d][1], self.queues["color"][colour[0]][1],
                              self.queues["camera_info"][info[0]][1], stamp)
            self.unmatched += d  # older depth frames are superseded
            for _ in range(d + 1):
                depth.popleft()
            for stream, index in (("color", colour[0]), ("camera_info", info[0])):
                for _ in range(index + 1):
                    self.queues[stream].popleft()
            return matched
        return None
