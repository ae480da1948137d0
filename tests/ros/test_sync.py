"""The RGB-D synchroniser without ROS: nearest-stamp matching, expiry in ROS time, resets on clock jumps."""

from __future__ import annotations

from wsseg.ros.sync import ApproximateSync

MS = 1_000_000
S = 1_000_000_000


def feed(sync: ApproximateSync[str], stamp_ns: int, now_ns: int | None = None,
         streams: tuple[str, ...] = ("depth", "color", "camera_info")) -> list[str]:
    """Add one capture (same stamp on every stream); returns the depth ids matched."""
    out = []
    for stream in streams:
        kwargs = {} if now_ns is None else {"now_ns": now_ns}
        matched = sync.add(stream, stamp_ns, f"{stream[0]}{stamp_ns // MS}", **kwargs)
        if matched is not None:
            out.append(matched.depth)
    return out


def test_a_burst_of_future_stamps_on_one_stream_does_not_freeze_the_sync() -> None:
    """Defect 1 of issue 21: 10 colour messages stamped 1000 s ahead filled the queue for good."""
    sync: ApproximateSync[str] = ApproximateSync(slop_s=0.02, queue_size=10)
    t = 5_000 * S
    for k in range(5):  # normal operation
        assert feed(sync, t + k * 100 * MS) == [f"d{(t + k * 100 * MS) // MS}"]
    for k in range(10):  # a driver clock glitch: 10 colour frames 1000 s in the future
        sync.add("color", t + 1000 * S + k * 100 * MS, "future")
    answered = [feed(sync, t + (10 + k) * 100 * MS) for k in range(20)]
    assert sum(len(a) for a in answered) >= 18, answered  # at most the first capture after the glitch is lost
    assert answered[-1], "the newest capture must be matched"
    assert sync.resets >= 1


def test_stamps_that_jump_back_reset_the_queues() -> None:
    """A bag replayed in a loop: stamps restart; pending messages of the old epoch are dropped, matching goes on."""
    sync: ApproximateSync[str] = ApproximateSync(slop_s=0.01, queue_size=5, jump_threshold_s=1.0)
    for k in range(3):
        feed(sync, 100 * S + k * 100 * MS)
    sync.add("depth", 100 * S + 300 * MS, "pending")  # never matched: its colour is lost
    assert feed(sync, 10 * S) == [f"d{10 * S // MS}"]  # the loop restarts 90 s earlier
    assert sync.resets == 1 and sync.unmatched >= 1
    assert all(not queue for queue in sync.queues.values())


def test_messages_expire_in_ros_time() -> None:
    """A depth frame whose colour never comes is dropped after expiry_s of ROS time, not kept forever."""
    sync: ApproximateSync[str] = ApproximateSync(slop_s=0.01, queue_size=10, expiry_s=1.0)
    now = 50 * S
    sync.add("depth", 10 * S, "lonely", now_ns=now)
    sync.add("camera_info", 10 * S, "i", now_ns=now)
    assert len(sync.queues["depth"]) == 1
    sync.add("camera_info", 10 * S + 100 * MS, "i2", now_ns=now + 2 * S)  # 2 s later: the lonely depth expired
    assert not sync.queues["depth"] and sync.expired >= 2 and sync.unmatched == 1
    assert feed(sync, 12 * S, now_ns=now + 2 * S + 10 * MS) == [f"d{12 * S // MS}"]


def test_the_ros_clock_jumping_back_resets() -> None:
    """use_sim_time with a bag loop: /clock goes back, queued messages belong to the old timeline."""
    sync: ApproximateSync[str] = ApproximateSync(slop_s=0.01, queue_size=10, expiry_s=5.0, jump_threshold_s=1.0)
    sync.add("depth", 20 * S, "old", now_ns=20 * S)
    sync.add("color", 3 * S, "new", now_ns=3 * S)  # the clock went back 17 s
    assert sync.resets == 1 and not sync.queues["depth"] and len(sync.queues["color"]) == 1


def test_full_queues_evict_the_oldest_arrival() -> None:
    """Each stream keeps its last queue_size messages *received* (an out-of-order one is not discarded at once)."""
    sync: ApproximateSync[str] = ApproximateSync(slop_s=0.01, queue_size=3, jump_threshold_s=100.0)
    for k in range(3):
        sync.add("color", (10 + k) * S, f"c{k}")
    sync.add("color", 9 * S + 500 * MS, "late")  # older stamp, newest arrival: kept, c0 evicted
    assert [m for _, m in sync.pending("color")] == ["late", "c1", "c2"]
