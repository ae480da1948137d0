"""What ``bench/methods.py`` runs for each method: one :class:`MethodEntry` per method in :data:`ENTRIES`.

To add a method (DSP, MPRM, WS3D, Densify), append one entry: the weak labels its paper uses at its paper's budget
(kind, budget, and how to simulate them from ground truth with a seed), the ``method:`` section of its training
config for a :class:`Schedule` (the same total steps as ``full``), the paper's own ratio of its mIoU to fully
supervised training on the same backbone (with the table it comes from), which inference mode is its headline
figure, and optionally the benchmark script of its ablation table (``bench/methods.py ablation NAME [ARGS]`` runs
``bench/<script> ARGS``).  Example::

    ENTRIES.append(MethodEntry(
        name="dsp", labels=WeakLabelSetting("sparse_points", "10%", lambda d, names, seed:
                                            simulate_sparse_points(d, names, seed, fraction=0.1)),
        options=lambda s: {"stage1_steps": s.steps // 2},
        paper_ratio=68.6 / 67.3, paper_source="DSP Tab. 4: S3DIS Area 5, 10 % labels vs KPConv retrained"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from wsseg_training.data.dataset import Dataset
from wsseg_training.labels import (
    simulate_clicks,
    simulate_labelled_scenes,
    simulate_scene_tags,
    simulate_sparse_points,
    simulate_subcloud_tags,
)
from wsseg_training.model.profiles import get_profile


@dataclass(frozen=True)
class Schedule:
    """The training length and recipe every method and its ``full`` reference share on one dataset.

    steps: total optimiser steps (``full`` gets the same).  rounds: the outer-loop length methods with rounds use
    (1T1C's self-training iterations), steps // rounds each.  profile, crop_points, lr: ``harness.recipe``.
    """

    steps: int
    rounds: int
    profile: str
    crop_points: int
    lr: float
    scenes: int

    @property
    def steps_per_round(self) -> int:
        return max(1, self.steps // self.rounds)


@dataclass(frozen=True)
class WeakLabelSetting:
    """kind: the weak-label kind (``dense`` = the ground truth itself).  budget: the paper's budget, as reported
    (``1/object``, ``10%``, ``100%``).  simulate(dataset, train scene names, seed) -> the weak labels (None for
    dense)."""

    kind: str
    budget: str
    simulate: Callable[[Dataset, Sequence[str], int], Any] | None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.budget}"


@dataclass(frozen=True)
class MethodEntry:
    """One method of the benchmark (module docstring).

    name: the ``wsseg train --method`` name.  options: the config's ``method:`` section for a schedule.
    paper_ratio: the paper's method mIoU / fully supervised mIoU (None = the paper gives none); paper_source:
    where it comes from.  headline: the inference mode reported as ``miou``: "" = the exported backbone, else a
    suffix of ``Method.offline_predictors`` ("-full").  needs_supervoxels: compute super-voxels first.
    checkpoint_rounds: write a checkpoint at the end of every round.  ablation: the script under ``bench/`` that
    produces the method's ablation table.  datasets: the datasets it runs on (None = every one).  key: a distinct
    id when a method has several entries (DSP at 1 % and 10 %); ``--methods NAME`` selects all of them.
    """

    name: str
    labels: WeakLabelSetting
    options: Callable[[Schedule], dict[str, Any]]
    paper_ratio: float | None
    paper_source: str
    headline: str = ""
    needs_supervoxels: bool = False
    checkpoint_rounds: bool = False
    ablation: str | None = None
    datasets: tuple[str, ...] | None = None
    key: str = ""

    @property
    def id(self) -> str:
        """What names this entry's rows and runs: ``key`` when one method has several entries (budgets), else
        ``name``."""
        return self.key or self.name


DENSE = WeakLabelSetting("dense", "100%", None)

#: the fully supervised reference every other row is divided by
FULL = MethodEntry(name="full", labels=DENSE, options=lambda s: {}, paper_ratio=1.0,
                   paper_source="by definition")

ENTRIES: list[MethodEntry] = [
    FULL,
    MethodEntry(
        name="otoc",
        labels=WeakLabelSetting("clicks", "1/object", lambda dataset, names, seed: simulate_clicks(
            dataset, names, seed=seed)),
        options=lambda s: {"variant": "rel_gp", "iterations": s.rounds, "steps_per_iteration": s.steps_per_round},
        paper_ratio=round(70.45 / 72.18, 3),
        paper_source="1T1C Tab. 5, ScanNet-v2 val: 1T1C 70.45 vs its fully supervised 3D U-Net 72.18",
        headline="-full", needs_supervoxels=True, checkpoint_rounds=True, ablation="otoc.py"),
    MethodEntry(
        # One run gives both rows: "Ours" (the Densify network's classifier, headline ``-no-bootstrap``) and
        # "Ours*" (the exported network after bootstrapping, the row's backbone_miou); bootstrapping takes the last
        # quarter of the run's length, so the run is as long as full's.
        name="densify",
        labels=WeakLabelSetting("scene_tags", "all/scene", lambda dataset, names, seed: simulate_scene_tags(
            dataset, names, seed)),
        options=lambda s: {"bootstrap_share": 0.25},
        paper_ratio=round(33.7 / 72.0, 3),
        paper_source="DYL Tab. 1, ScanNet val: Densify 33.7 (38.1 = 0.53 with bootstrapping) vs ~72 fully "
                     "supervised SparseConv (MinkUNet)",
        headline="-no-bootstrap", needs_supervoxels=True, ablation="densify.py"),
    MethodEntry(
        # The boundary network's stage comes before the run's steps (a quarter more steps); the main stage is as long
        # as full's.  bench/ws3d.py (ablation ws3d) has the 1 % row, Sup-only, instance AP and Tab. 5.
        name="ws3d",
        labels=WeakLabelSetting("labelled_scenes", "5%", lambda dataset, names, seed: simulate_labelled_scenes(
            dataset, names, seed=seed, fraction=0.05)),
        options=lambda s: {"boundary_steps": max(1, s.steps // 4)},
        paper_ratio=round(56.2 / 72.9, 3),
        paper_source="WS3D Tab. 1, ScanNet val: WS3D 56.2 at 5 % labelled points vs Sup-only-GPC 72.9 at 100 %",
        needs_supervoxels=True, ablation="ws3d.py"),
]


#: DSP labels a share of its sub-sampled network input: the points of distinct voxels of the bench's grid (the
#: ``tiny`` profile's, bench/methods.py's default network)
DSP_LABEL_VOXEL_M = get_profile("tiny").voxel_size_m


def dsp_entry(fraction: float, paper_miou: float) -> MethodEntry:
    """DSP (CSFR -> ISFR, two equal stages) at one budget; the paper ratio is vs its KPConv retrained on 100 %."""
    budget = f"{fraction:.0%}"
    return MethodEntry(
        name="dsp", key=f"dsp-{budget}", labels=WeakLabelSetting("sparse_points", budget, lambda dataset, names, seed:
                                                                 simulate_sparse_points(dataset, names, seed, fraction,
                                                                                        voxel_size_m=DSP_LABEL_VOXEL_M)),
        options=lambda s: {"stages": ["csfr", "isfr"]}, paper_ratio=round(paper_miou / 67.3, 3),
        paper_source=f"DSP Tab. 4, S3DIS Area 5: DSP {budget} {paper_miou} vs the same KPConv retrained on 100 % "
                     "67.3 (vs fully supervised DSP 68.5: 67.0 / 68.5 = 0.978 at 1 %)",
        ablation="dsp.py")


ENTRIES += [dsp_entry(0.01, 67.0), dsp_entry(0.1, 68.6)]

# MPRM: half the steps train the classification network, half retrain a fresh segmentation network on the CRF pseudo
# labels (the exported network: the rows' mIoU).  bench/mprm.py (ablation mprm) trains the same runs and adds the
# paths / fusion / CRF table, PCAM alone and the classifier's own val mIoU (-pcam / -mprm / -mprm-crf).
ENTRIES += [
    MethodEntry(
        name="mprm", key="mprm-subcloud",
        labels=WeakLabelSetting("subcloud_tags", "r=2m", lambda dataset, names, seed: simulate_subcloud_tags(
            dataset, names, seed, radius_m=2.0)),
        options=lambda s: {"classify_share": 0.5},
        paper_ratio=round(43.2 / 72.0, 3),
        paper_source="MPRM Tab. 4, ScanNet val: MPRM-CRF + retrained KPConv 43.2 vs ~72 fully supervised "
                     "(issue #18's goal: >= 0.60)",
        ablation="mprm.py"),
    MethodEntry(
        name="mprm", key="mprm-scene",
        labels=WeakLabelSetting("scene_tags", "all/scene", lambda dataset, names, seed: simulate_scene_tags(
            dataset, names, seed)),
        options=lambda s: {"classify_share": 0.5},
        paper_ratio=None,
        paper_source="MPRM reports no val segmentation from scene tags (Tab. 2, train pseudo labels: 24.4 vs 46.6 "
                     "with sub-cloud tags; issue #18's goal: >= 0.35)",
        ablation="mprm.py"),
]


def entries(name: str) -> list[MethodEntry]:
    """The entries called ``name`` (every budget of a method) or keyed ``name``; ``SystemExit`` naming the known
    ones otherwise."""
    found = [e for e in ENTRIES if name in (e.name, e.key)]
    if not found:
        known = list(dict.fromkeys(x for e in ENTRIES for x in (e.name, e.key) if x))
        raise SystemExit(f"bench/methods.py: unknown method {name!r}; known: {known}")
    return found


def entry(name: str) -> MethodEntry:
    """The (first) entry called ``name``; ``SystemExit`` naming the known ones otherwise."""
    return entries(name)[0]
