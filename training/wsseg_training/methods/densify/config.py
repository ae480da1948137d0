"""Options of ``wsseg train --method densify`` (config ``method:``), one frozen dataclass.

Sources: DYL §4.1 (K = 300, K-means every 10 epochs, warm-up 250 of 400 epochs, AdamW + OneCycle at 0.01,
batch 6), Supp. A.3 (no ℓ_match for 60 epochs), A.4 (300 -> 120 filtering groups); GrowSP for what DYL takes
from it (ℓ_us logit scale 5, c_rgb = c_shape = 3, the 10-point drop of small super-voxels on S3DIS).  Epoch
counts left at None follow the paper's proportions of the run's ``train.epochs``
(:meth:`~wsseg_training.methods.densify.schedule.DensifySchedule.scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wsseg_training.engine.config import FieldError
from wsseg_training.methods.common.options import MethodOptions, option
from wsseg_training.methods.densify.losses import MATCH_MODES

#: loss terms of Eq. 1 an ablation may switch off (ℓ_cam always stays: it trains the classifier)
LOSS_TERMS = ("cam", "us", "match")
SUPERVOXEL_SOURCES = ("dataset", "growsp")
#: groups per primitive of assignment filtering (Supp. A.4: 120 groups for 300 primitives)
FILTER_GROUP_RATIO = 120 / 300


@dataclass(frozen=True, kw_only=True)
class DensifyOptions(MethodOptions):
    """Every Densify knob (see the module docstring for the sources)."""

    losses: tuple[str, ...] = option(LOSS_TERMS, doc="terms of Eq. 1 (ablation: drop us and/or match)")
    match: str = option("hungarian", choices=MATCH_MODES,
                        doc="hungarian = bipartite, one primitive per tagged class (the paper); naive = every "
                            "primitive to its best tagged class (Tab. 4's l*_match)")
    primitives: int | None = option(None, ge=1, doc="K; None = from the training set's super-voxel count")
    filter_groups: int | None = option(None, ge=0, doc="assignment-filtering groups after the warm-up; None = "
                                                       "0.4 K (120 of 300), 0 = no filtering")
    conflict_labels: int = option(2, choices=(2, 3), doc="distinct labels that make a filtering group a conflict "
                                                         "(our reading 2; the literal 'more than two' is 3)")
    kmeans_every_epochs: int | None = option(None, ge=1, doc="K-means period; None = 10/400 of the run")
    warmup_epochs: int | None = option(None, ge=0, doc="hand-crafted K-means features before this epoch; None = "
                                                       "250/400 of the run")
    match_off_epochs: int | None = option(None, ge=0, doc="no l_match before this epoch; None = 60/400 of the run")
    kmeans_iterations: int = option(20, ge=1, doc="Lloyd iterations per K-means round")
    us_scale: float = option(5.0, gt=0, doc="logit scale of l_us on cosine similarities (GrowSP)")
    c_rgb: float = option(3.0, ge=0, doc="weight of the mean colour in warm-up K-means features")
    c_shape: float = option(3.0, ge=0, doc="weight of the normal-cosine histogram in warm-up K-means features")
    supervoxels: str = option("dataset", choices=SUPERVOXEL_SOURCES,
                              doc="dataset = the scenes' super-voxels (wsseg data supervoxels); growsp = "
                                  "GrowSP-style VCCS + region growing computed at load")
    min_supervoxel_points: int = option(10, ge=1, doc="smaller super-voxels are left out of K-means (GrowSP)")
    bootstrap_epochs: int = option(0, ge=0, doc="'Ours*': retrain a fresh network this many epochs of the run on "
                                                "the tag-consistent predictions (0 = off)")
    bootstrap_share: float = option(0.0, ge=0, lt=1, doc="or: this share of the run's epochs (0 = off)")

    def validate(self) -> None:
        unknown = [t for t in self.losses if t not in LOSS_TERMS]
        if unknown or "cam" not in self.losses or len(set(self.losses)) != len(self.losses):
            raise FieldError("losses", list(self.losses), f"distinct terms of {LOSS_TERMS} including 'cam'")
        if self.bootstrap_epochs and self.bootstrap_share:
            raise FieldError("bootstrap_share", self.bootstrap_share, "0 when bootstrap_epochs is given")

    def bootstrap_epochs_of(self, epochs: int) -> int:
        """Epochs of bootstrapping in a run of ``epochs`` epochs (0 = none)."""
        if self.bootstrap_share > 0:
            return max(1, round(self.bootstrap_share * epochs))
        return self.bootstrap_epochs

    def filter_group_count(self, k: int) -> int:
        """Filtering groups for K primitives (0 = no filtering)."""
        if self.filter_groups is not None:
            return min(self.filter_groups, k)
        return max(1, round(FILTER_GROUP_RATIO * k))
