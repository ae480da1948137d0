"""Approximate-time synchronisation of RGB-D streams (depth, colour, camera_info), without ROS.

Policy ("nearest to the depth stamp, within a slop"):

* each stream keeps the last ``queue_size`` messages it *received* (a full queue evicts its oldest
  arrival), ordered by stamp;
* a depth message ``d`` is matched with the colour and camera_info messages whose stamps are
  nearest to ``d``'s; the match is emitted once it is *final*: each of the two other streams has
  already delivered a message stamped at or after ``d`` (so, with stamps increasing per stream,
  no later message can be nearer), and both differences are at most ``slop_s``;
* the newest depth that can be matched wins: older pending depth frames are discarded (counted
  in ``unmatched``) and every message up to the matched ones leaves the queues.  This suits a
  keep-latest consumer.

Time and glitches.  Every message is added with the receiver's ROS time (``now_ns``: the node
clock, simulated time under ``use_sim_time``):

* a message that waited ``expiry_s`` of ROS time without a partner is dropped (``expired``), so
  no message, however odd its stamp, stays in a queue for ever;
* a *clock jump* resets the synchroniser (every queue emptied, ``resets`` counted): a stream whose
  stamp goes back by more than ``jump_threshold_s`` (a driver clock glitch ending, a bag loop
  restarting) or the ROS clock going back by more than that (``/clock`` of a looping bag).

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


@dataclass
class _Entry(Generic[T]):
    stamp_ns: int
    arrival_ns: int | None  # ROS time of arrival; None when the caller gives no clock
    sequence: int  # arrival order within the synchroniser
    msg: T


class ApproximateSync(Generic[T]):
    """Feed messages with :meth:`add`; it returns a :class:`Matched` frame when one becomes final.

    Counters (read by the node's diagnostics): ``unmatched`` depth frames discarded without a match,
    ``expired`` messages dropped after ``expiry_s``, ``resets`` after clock jumps, ``matched`` frames.
    """

    def __init__(self, slop_s: float = 0.05, queue_size: int = 10, expiry_s: float = 2.0,
                 jump_threshold_s: float = 1.0) -> None:
        if slop_s < 0 or queue_size < 1 or not expiry_s > 0 or not jump_threshold_s > 0:
            raise ValueError(f"ApproximateSync: slop_s {slop_s} must be >= 0, queue_size {queue_size} >= 1, "
                             f"expiry_s {expiry_s} and jump_threshold_s {jump_threshold_s} > 0")
        self.slop_ns = round(slop_s * 1e9)
        self.expiry_ns = round(expiry_s * 1e9)
        self.jump_ns = round(jump_threshold_s * 1e9)
        self.queue_size = queue_size
        self.queues: dict[str, deque[_Entry[T]]] = {s: deque() for s in STREAMS}
        self._newest_stamp: dict[str, int] = {}  # newest stamp received per stream since the last reset
        self._last_now_ns: int | None = None
        self._sequence = 0
        self.unmatched = 0
        self.expired = 0
        self.resets = 0
        self.matched = 0

    def pending(self, stream: str) -> list[tuple[int, T]]:
        """(stamp ns, message) of the messages of ``stream`` waiting for a match, by stamp."""
        return [(e.stamp_ns, e.msg) for e in self.queues[stream]]

    def reset(self) -> None:
        """Drop every queued message (pending depth frames count as unmatched)."""
        self.unmatched += len(self.queues["depth"])
        for queue in self.queues.values():
            queue.clear()
        self._newest_stamp.clear()
        self.resets += 1

    def add(self, stream: str, stamp_ns: int, msg: T, now_ns: int | None = None) -> Matched[T] | None:
        """Queue ``msg`` of ``stream`` stamped ``stamp_ns``, received at ROS time ``now_ns`` (None: no expiry)."""
        if stream not in self.queues:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        if now_ns is not None:
            if self._last_now_ns is not None and now_ns < self._last_now_ns - self.jump_ns:
                self.reset()  # the ROS clock went back
            self._last_now_ns = now_ns
            self._expire(now_ns)
        newest = self._newest_stamp.get(stream)
        if newest is not None and stamp_ns < newest - self.jump_ns:
            self.reset()  # this stream's clock went back
        self._insert(stream, _Entry(stamp_ns, now_ns, self._sequence, msg))
        self._sequence += 1
        self._newest_stamp[stream] = max(stamp_ns, self._newest_stamp.get(stream, stamp_ns))
        return self._match()

    def _insert(self, stream: str, entry: _Entry[T]) -> None:
        queue = self.queues[stream]
        if len(queue) >= self.queue_size:  # evict the oldest arrival
            oldest = min(range(len(queue)), key=lambda i: queue[i].sequence)
            del queue[oldest]
            if stream == "depth":
                self.unmatched += 1
        index = len(queue)
        while index > 0 and queue[index - 1].stamp_ns > entry.stamp_ns:
            index -= 1
        queue.insert(index, entry)

    def _expire(self, now_ns: int) -> None:
        limit = now_ns - self.expiry_ns
        for stream, queue in self.queues.items():
            keep = [e for e in queue if e.arrival_ns is None or e.arrival_ns >= limit]
            dropped = len(queue) - len(keep)
            if dropped:
                self.expired += dropped
                if stream == "depth":
                    self.unmatched += dropped
                queue.clear()
                queue.extend(keep)

    def _nearest(self, stream: str, stamp_ns: int) -> tuple[int, int] | None:
        """(index, |difference| ns) of the message of ``stream`` nearest to ``stamp_ns``, if final."""
        queue = self.queues[stream]
        if not queue or queue[-1].stamp_ns < stamp_ns:
            return None  # a nearer message may still come
        index = min(range(len(queue)), key=lambda i: abs(queue[i].stamp_ns - stamp_ns))
        return index, abs(queue[index].stamp_ns - stamp_ns)

    def _match(self) -> Matched[T] | None:
        depth = self.queues["depth"]
        for d in range(len(depth) - 1, -1, -1):  # newest first
            stamp = depth[d].stamp_ns
            colour = self._nearest("color", stamp)
            info = self._nearest("camera_info", stamp)
            if colour is None or info is None or colour[1] > self.slop_ns or info[1] > self.slop_ns:
                continue
            matched = Matched(depth[d].msg, self.queues["color"][colour[0]].msg,
                              self.queues["camera_info"][info[0]].msg, stamp)
            self.unmatched += d  # older depth frames are superseded
            self.matched += 1
            for _ in range(d + 1):
                depth.popleft()
            for stream, index in (("color", colour[0]), ("camera_info", info[0])):
                for _ in range(index + 1):
                    self.queues[stream].popleft()
            return matched
        return None
