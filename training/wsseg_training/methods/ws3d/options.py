"""Options of ``ws3d`` (config ``method:``), with the paper's values where it gives them (WS3D §4.1)."""

from __future__ import annotations

from dataclasses import dataclass

from wsseg_training.engine.config import FieldError
from wsseg_training.methods.common.class_weights import CLASS_WEIGHTINGS
from wsseg_training.methods.common.options import MethodOptions, option
from wsseg_training.methods.ws3d.boundary import JSENET_RADIUS_CELLS
from wsseg_training.methods.ws3d.contrast import NUM_STAGES, POSITIVES, TEMPERATURE
from wsseg_training.methods.ws3d.energy import EPSILON, GAMMA
from wsseg_training.methods.ws3d.regions import PAIR_RULES
from wsseg_training.methods.ws3d.thresholds import THRESHOLD_RULES

REGION_SOURCES = ("supervoxels", "region_growing")


@dataclass(frozen=True, kw_only=True)
class Ws3dOptions(MethodOptions):
    """Options of ``ws3d`` (see :mod:`wsseg_training.methods.ws3d.method`)."""

    regions: str = option("supervoxels", choices=REGION_SOURCES,
                          doc="over-segmentation: the scene records' super-voxels (purer on our data, "
                              "bench/results/ws3d_regions.md) or region growing on normals/curvature (the paper's)")
    boundary_steps: int | None = option(None, ge=1, doc="steps of the boundary network (None = train.steps / 4); "
                                                        "they come before the train.steps of the main stage")
    boundary_radius_cells: float = option(JSENET_RADIUS_CELLS, gt=0,
                                          doc="boundary ground truth radius in voxels (JSENet: 2 cm at a 1 cm grid)")
    boundary_threshold: float | None = option(None, gt=0, lt=1,
                                              doc="boundary probability above which a point is one (None = "
                                                  "chosen by boundary_threshold_rule)")
    boundary_threshold_rule: str = option("best_f1", choices=THRESHOLD_RULES,
                                          doc="how the threshold is chosen: best F1 on the labelled scenes' points, "
                                              "the lowest reaching boundary_precision there, or the one whose "
                                              "w = 1 pair share on the unlabelled scenes is nearest "
                                              "boundary_pair_share (methods/ws3d/thresholds.py)")
    boundary_precision: float = option(0.6, gt=0, le=1, doc="target precision of rule 'precision'")
    boundary_pair_share: float | None = option(None, ge=0, le=1,
                                               doc="target w = 1 pair share of rule 'pair_share' (None = the "
                                                   "labelled scenes' share of adjacent pairs whose regions' "
                                                   "majority labels differ)")
    focal_alpha: float = option(2.0, ge=0, doc="focusing exponent of the boundary focal loss (Eq. 1)")
    boundary_pairs: str = option("contain", choices=PAIR_RULES,
                                 doc="boundary pair rule: both regions hold a boundary point (Eq. 2), or the "
                                     "boundary runs along their shared border ('interface')")
    adjacency_k: int = option(10, ge=1, doc="k of the k-NN graph that finds adjacent regions")
    gamma: float = option(GAMMA, gt=0, lt=1, doc="confidence threshold of H (γ)")
    epsilon: float = option(EPSILON, gt=0, le=1, doc="margin of the boundary push term (ε)")
    temperature: float = option(TEMPERATURE, gt=0, doc="InfoNCE temperature (τ; not given by the paper)")
    contrast_stages: int = option(NUM_STAGES, ge=1, doc="backbone stages with a contrast head (M; 1 = single)")
    contrast_positives: str = option("region", choices=POSITIVES,
                                     doc="positive pairs: the same region in the other view, or every region of "
                                         "its pseudo class")
    embed_dim: int = option(32, ge=1, doc="width of the contrast embeddings")
    labelled_samples: int = option(2, ge=1, doc="labelled crops per step beside the unlabelled view groups")
    rampup_fraction: float = option(0.2, ge=0, le=1,
                                    doc="share of the main stage over which the unsupervised weights grow "
                                        "linearly from 0 to 1 (0 = full weight from the first step)")
    energy_weight: float = option(1.0, ge=0, doc="weight of E_sum,1 + E_sum,2 (paper: 1)")
    contrast_weight: float = option(1.0, ge=0, doc="weight of L_multi (paper: 1)")
    unsupervised: bool = option(True, doc="false = supervised only (Sup-only, Tab. 5 No. 9)")
    boundary: bool = option(True, doc="false = no boundary network, w = 0 (Tab. 5 No. 2)")
    pairwise: bool = option(True, doc="false = no pairwise energy (Tab. 5 No. 3)")
    energy_confidence: bool = option(True, doc="false = H = 1 in the energy (Tab. 5 No. 4)")
    contrast: bool = option(True, doc="false = no region contrast (Tab. 5 No. 7)")
    contrast_confidence: bool = option(True, doc="false = every region in the contrast (Tab. 5 No. 5)")
    instance: bool = option(True, doc="train and export the offset head (instance segmentation, Tab. 4)")
    instance_radius_voxels: float = option(1.5, gt=0, doc="clustering radius in voxels (PointGroup: 3 cm at 2 cm)")
    instance_min_points: int = option(50, ge=1, doc="smallest instance proposal, points")
    instance_classes: tuple[str, ...] | None = option(None, doc="classes with instances (None = the class "
                                                               "table's non-structure classes)")
    class_weighting: str = option("none", choices=CLASS_WEIGHTINGS, doc="cross-entropy class weights")

    def validate(self) -> None:
        if self.boundary_threshold is not None and self.boundary_threshold_rule != "best_f1":
            raise FieldError("boundary_threshold_rule", self.boundary_threshold_rule,
                             "'best_f1' (unused) when boundary_threshold is fixed")
        if self.boundary_threshold_rule == "pair_share" and self.boundary_pairs != "contain":
            raise FieldError("boundary_threshold_rule", self.boundary_threshold_rule,
                             "'best_f1' or 'precision' with boundary_pairs 'interface' ('pair_share' counts Eq. 2 "
                             "pairs)")
