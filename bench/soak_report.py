"""The soak's summary of one node (frames, rejections, latency, RSS by window and kind, stalls) and its
Markdown report; used by ``bench/soak.py``."""

from __future__ import annotations

import bisect
import itertools
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from soak import Feed


def stalls(feed: Feed, stall_s: float, end: float) -> list[tuple[float, float]]:
    """(start, length) of every gap >= ``stall_s`` between answers in which a valid frame sent at least
    ``stall_s`` before the gap's end got no answer (the node was fed but said nothing)."""
    with feed.lock:
        answers = sorted(feed.answered.values())
        sends = sorted(feed.sent.values())
    if not sends:
        return []
    out = []
    bounds = [sends[0], *answers, end]
    for a, b in itertools.pairwise(bounds):
        if b - a >= stall_s:
            i = bisect.bisect_left(sends, a)
            if i < len(sends) and sends[i] <= b - stall_s:
                out.append((a, b - a))
    return out


def window_medians(series: list[tuple[float, int]], start: float, end: float, warmup_s: float,
                   window_s: float) -> list[float]:
    """Median of ``series`` ((monotonic time, bytes) samples) in each ``window_s`` window after the warm-up
    (windows with fewer than 10 samples are left out)."""
    out = []
    for lo in np.arange(warmup_s, end - start, window_s):
        values = [r for t, r in series if lo <= t - start < lo + window_s]
        if len(values) >= 10:
            out.append(float(np.median(values)))
    return out


def growth_pct(values: list[float]) -> float | None:
    return round(100.0 * (values[-1] - values[0]) / values[0], 2) if values and values[0] else None


def summarise(feed: Feed, start: float, end: float, warmup_s: float, stall_s: float,
              window_s: float) -> dict[str, Any]:
    with feed.lock:
        sent = dict(feed.sent)
        answered = {s: t for s, t in feed.answered.items() if s in sent}
    latency = np.array([(answered[s] - sent[s]) * 1e3 for s in answered])
    with feed.client.lock:
        totals = np.array([t["total"] for s, t in feed.client.timings.items() if s in answered and "total" in t])
    diag = feed.diagnostics()
    after = [r for t, r in feed.rss if t - start >= warmup_s] or [r for _, r in feed.rss]
    rss0, rss1 = float(np.median(after[:5])), float(np.median(after[-5:]))  # medians of 5 samples (25 s)
    gaps = np.diff(sorted([*answered.values(), end]))
    windows = window_medians(feed.rss, start, end, warmup_s, window_s)
    parts = {name: window_medians([(row[0], row[k]) for row in feed.rss_parts], start, end, warmup_s, window_s)
             for k, name in ((1, "anon"), (2, "file"), (3, "shmem"))}
    return {
        "node": feed.name, "mode": feed.mode,
        "frames_in_valid": len(sent), "frames_in_faulty": feed.faulty_sent, "answered": len(answered),
        "node_frames_received": int(diag.get("frames_received", 0)),
        "node_frames_processed": int(diag.get("frames_processed", 0)),
        "node_frames_dropped": int(diag.get("frames_dropped", 0)),
        "node_frames_rejected": int(diag.get("frames_rejected", 0)),
        "rejected_by_cause": diag.get("rejected_by_cause", "?"),
        "errors": diag.get("errors", "?"),
        "sync": {k: diag[k] for k in ("sync_matched", "sync_unmatched", "sync_expired", "sync_resets") if k in diag},
        "latency_ms_median": round(float(np.median(latency)), 1) if latency.size else None,
        "latency_ms_p95": round(float(np.percentile(latency, 95)), 1) if latency.size else None,
        "node_total_ms_median": round(float(np.median(totals)), 1) if totals.size else None,
        "node_total_ms_p95": round(float(np.percentile(totals, 95)), 1) if totals.size else None,
        "longest_gap_s": round(float(gaps.max()), 1) if gaps.size else None,
        "gaps_over_10s": int((gaps >= 10.0).sum()),
        "rss_mb_start": round(rss0 / 2**20, 1), "rss_mb_end": round(rss1 / 2**20, 1),
        "rss_mb_max": round(max(r for _, r in feed.rss) / 2**20, 1),
        "rss_growth_pct_after_warmup": round(100.0 * (rss1 - rss0) / rss0, 2),
        "rss_window_s": window_s,
        "rss_mb_5min_medians": [round(w / 2**20, 1) for w in windows],
        "rss_growth_pct_5min_windows": growth_pct(windows),
        "rss_parts_mb_window_medians": {k: [round(w / 2**20, 1) for w in v] for k, v in parts.items()},
        "rss_parts_growth_mb": {k: round((v[-1] - v[0]) / 2**20, 1) if v else None for k, v in parts.items()},
        "rss_mb_series": [(round(t - start, 1), round(r / 2**20, 1)) for t, r in feed.rss],
        "rss_parts_mb_series": [(round(t - start, 1), *(round(b / 2**20, 1) for b in row))
                                for t, *row in feed.rss_parts],
        "env": feed.env, "params": feed.params,
        "memory_trims": diag.get("memory_trims"), "memory_trim_last_ms": diag.get("memory_trim_last_ms"),
        "stalls": [(round(a - start, 1), round(length, 1)) for a, length in stalls(feed, stall_s, end)],
        "longest_stall_s_node": diag.get("longest_stall_s"),
        "faults": feed.faults,
        "last_status": {"level": diag.get("level"), "message": diag.get("message")},
    }


def column_title(node: dict[str, Any]) -> str:
    title = "LiDAR (SemanticKITTI, PointCloud2)" if node["mode"] == "points" else "RGB-D (mOSD 640x480 depth + colour)"
    env = " ".join([*(f"{k}={v}" for k, v in node.get("env", {}).items()),
                    *(f"{k}:={v}" for k, v in node.get("params", {}).items())])
    return f"`{node['node']}`: {title}" + (f", `{env}`" if env else "")


def markdown(results: dict[str, Any]) -> str:
    window_min = results["nodes"][0].get("rss_window_s", 300.0) / 60
    lines = [f"# segment_node soak ({results['duration_s'] / 60:.0f} min, {results['machine']})", "",
             f"{len(results['nodes'])} real node processes (Fast DDS shared memory, input QoS "
             f"`{results.get('input_qos', 'sensor_data')}`, "
             f"ONNX Runtime CPU, `{results['profile']}` profile, "
             f"random weights, `config/segment.yaml` defaults), real frames published at {results['rate_hz']:g} Hz "
             f"each, a fault every {results['cycle_s']:g} s per node "
             f"(in turn: {', '.join(results.get('faults', ()))}). "
             f"Run with `nice -n 5` on a {os.cpu_count()}-core VM shared with other jobs: load average "
             f"{results['load_average']['start']:.1f} at start, {results['load_average']['mean']:.1f} mean, "
             f"{results['load_average']['end']:.1f} at end, so latencies are upper bounds.", "",
             "| | " + " | ".join(column_title(n) for n in results["nodes"]) + " |",
             "|---|" + "---:|" * len(results["nodes"])]
    rows = [
        ("frames in: valid / faulty", lambda r: f"{r['frames_in_valid']} / {r['frames_in_faulty']}"),
        ("answered (labelled cloud received)", lambda r: f"{r['answered']}"),
        ("node: received / processed", lambda r: f"{r['node_frames_received']} / {r['node_frames_processed']}"),
        ("node: dropped (keep-latest, sync)", lambda r: f"{r['node_frames_dropped']}"),
        ("node: rejected, by cause", lambda r: f"{r['node_frames_rejected']}: {r['rejected_by_cause']}"),
        ("node: errors (engine reload refused)", lambda r: r["errors"]),
        ("RGB-D sync", lambda r: ", ".join(f"{k[5:]} {v}" for k, v in r["sync"].items()) or "-"),
        ("latency ms, median / p95 (publish -> labels)", lambda r: f"{r['latency_ms_median']} / {r['latency_ms_p95']}"),
        ("node total ms (its ~/output/timing), median / p95", lambda r: f"{r['node_total_ms_median']} / "
         f"{r['node_total_ms_p95']}"),
        ("longest gap between answers, s; gaps >= 10 s", lambda r: f"{r['longest_gap_s']}; {r['gaps_over_10s']}"),
        ("RSS MB after warm-up / end / max", lambda r: f"{r['rss_mb_start']} / {r['rss_mb_end']} / {r['rss_mb_max']}"),
        (f"RSS growth after warm-up (5 samples / {window_min:g}-min medians)",
         lambda r: f"{r['rss_growth_pct_after_warmup']:+.2f} % / {r.get('rss_growth_pct_5min_windows')} %"),
        (f"RSS {window_min:g}-min medians, MB", lambda r: ", ".join(f"{v:.0f}" for v in r["rss_mb_5min_medians"])),
        ("RSS change by kind, first -> last window, MB (anon / file / shmem)",
         lambda r: " / ".join(f"{r['rss_parts_growth_mb'].get(k)}" for k in ("anon", "file", "shmem"))),
        (f"stalls (valid frames, no answer >= {results['stall_s']:g} s)", lambda r: f"{len(r['stalls'])}"
         + (f" {r['stalls'][:5]}" if r["stalls"] else "")),
        ("faults injected", lambda r: f"{len(r['faults'])}"),
        ("exit code on SIGINT", lambda r: f"{r['exit_code']}"),
    ]
    lines += [f"| {label} | " + " | ".join(str(cell(n)) for n in results["nodes"]) + " |" for label, cell in rows]
    lines += ["", f"RSS growth: median of the last 5 samples (every 5 s) against the median of the first 5 after a "
              f"warm-up of {results['warmup_s']:g} s; "
              f"by kind: the node's RssAnon (heap, arenas, ONNX Runtime), RssFile (libraries), RssShmem (Fast DDS "
              f"shared-memory segments it has touched). Fast DDS shared-memory "
              f"files in /dev/shm (machine-wide, other jobs' included) before / after: "
              f"{results['shm_files']['before']} / {results['shm_files']['after']}.",
              "", f"Command: `{results['command']}`; wall {results['wall_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)
