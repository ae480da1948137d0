"""Hyper-parameters of 1T1C ("One Thing One Click", Liu et al., CVPR 2021), one frozen dataclass.

Sources: [1T1C §4 "Implementation Details"] gives D = 32, T = 0.9, s = 20, τ = 0.07, m = 0.9,
all σ = λ = 1 and five self-training iterations; the mean-field solver follows Krähenbühl & Koltun
as the paper says, with the iteration count of the authors' ``cvpr2021_version/merge`` code (5).
Everything not fixed by the paper is marked ASSUMPTION and explained where it is used
(``graph.py``, ``crf.py``, ``propagate.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from wsseg_training.engine.config import FieldError
from wsseg_training.methods.common.class_weights import CLASS_WEIGHTINGS, canonical_weighting
from wsseg_training.methods.common.options import MethodOptions, option

#: self-training variants of the paper's Table 3 / Table 6
VARIANTS = ("unet", "gp", "rel_gp")
#: pairwise feature groups of Eq. 5 used by each variant (``unet`` has no graph)
VARIANT_GROUPS: dict[str, tuple[str, ...]] = {
    "unet": (),
    "gp": ("colour", "coords"),
    "rel_gp": ("colour", "coords", "unet", "relation"),
}
NEIGHBOURHOODS = ("dense", "topk")
PAIRWISE_NORMALISATIONS = ("degree", "none")
#: fusion of Θ's and R's probabilities -> exponent on their product (``relation.combine_probabilities``)
FUSION_EXPONENTS: dict[str, float] = {"product": 1.0, "geometric": 0.5}
#: pseudo-label selection rules (``propagate.select_nodes``)
SELECTIONS = ("marginal", "agree", "code")
#: what every Y_t (t >= 1) keeps on top of the propagated labels (``method.OtocMethod``)
ANCHORS = ("supervoxel", "click")


@dataclass(frozen=True, kw_only=True)
class OtocConfig(MethodOptions):
    """Every 1T1C knob (keyword construction; validated on creation: ``option`` ranges, then ``validate``).

    variant: ``unet`` (self-training on Θ's own confidence, no graph, point level), ``gp`` (graph
        propagation with the hand-crafted colour + coordinate kernel), ``rel_gp`` (the full method: relation
        network, fused unary, 4-group kernel).  [1T1C Tab. 3, Supp. D]
    memory_bank: prototypes from the momentum memory bank (True, the paper) or the current batch's class means
        ("w/o MB", Supp. C).
    embed_dim: D, relation embedding width.  [§4: D = 32]
    temperature: τ of the C-way softmax contrastive loss (Eq. 6) and of R's class probabilities.  [§4: 0.07]
    momentum: m of the memory-bank update (Eq. 7), once per forward pass with the class means of its samples.
        [§4: 0.9]  Measured, kept: on the synthetic rooms m = 0.9 lets the prototypes of classes the young
        networks embed alike (wall, window, door, board) collapse to one direction (cosine >= 0.98), so R is
        flat on them; 0.99 keeps them apart and helps at 5 x 200 steps, not at 5 x 400
        (``bench/results/otoc_audit.md`` section 3).
    samples_per_class: s, labelled super-voxels drawn per class per forward pass, with replacement when a class
        has fewer.  [§4: s = 20; Supp. C for replacement; the released code uses 10]
    sigma_* / lambda_*: σ and λ of each Gaussian term of Eq. 5 (colour, coordinates, U-Net feature, relation
        embedding).  [§4: all 1]  Units: colour in [0, 1] per channel, coordinates in metres, both embeddings
        L2-normalised (see ``graph.py``).
    pairwise_weight: factor on every pairwise weight.  ASSUMPTION: the paper has no such factor; with the
        ``degree`` normalisation a node's total pull is about this many nats, and 2 lets a coherent neighbourhood
        overturn a unary margin of up to ~1 nat (p = 0.6 vs 0.25) while leaving confident nodes alone.
    pairwise_normalisation: ``degree`` (symmetric D^-1/2 K D^-1/2, so a node's total pairwise pull is about
        ``pairwise_weight`` nats whatever the super-voxel density) or ``none`` (Eq. 5 literally).  ASSUMPTION.
    neighbourhood: ``dense`` = every pair of super-voxels of the scene (Eq. 3 sums over all j < j'; the
        authors' code builds the full M x M kernel); scenes above ``max_dense_nodes`` switch to ``topk``, the
        ``topk_neighbours`` largest kernel entries of each node (symmetrised), which keeps memory O(M k).
    mean_field_iterations: parallel mean-field updates.  [authors' code: 5; Krähenbühl & Koltun report
        convergence within 5-10]
    confidence_threshold: T in probability terms.  [§4: 0.9]  Eq. 8's confidence C_j (mean -log probability
        of the assigned label over the super-voxel's points, after propagation) passes iff C_j <= -ln T, i.e.
        the geometric-mean probability is >= T (see ``propagate.select_confident``).
    self_training_iterations: rounds of Algorithm 1.  [§4: "converges after five iterations"]
    probability_eps: floor on probabilities before taking logs (unary energies, confidences).
    fusion: how Θ's and R's super-voxel probabilities combine into the unary.  ``product`` = the paper [§3.3]
        (p_Θ p_R renormalised); ``geometric`` (default) = the normalised geometric mean sqrt(p_Θ p_R), same
        argmax, half the log-odds.  DEVIATION, by measurement: R's softmax over cos / τ (τ = 0.07) is very
        peaked, the product inherits it, and T = 0.9 then admits many wrong super-voxels; the networks feed
        on their own labels and the pseudo labels collapse (8 synthetic rooms, ``tiny``, 5 rounds x 120 steps:
        pseudo-label mIoU 73 -> 51 -> 46 -> 33 -> 32 % with ``product``; 73 -> 72 -> 73 -> 73 -> 72 % with
        ``geometric``).
    selection: pseudo-label rule (``propagate.select_nodes``).  ``marginal`` = the paper's Eq. 8 on the CRF
        marginal; ``agree`` (default) = ``marginal`` and the label equals Θ's (and R's) own argmax, so the
        graph never turns a node into a pseudo label against a network (a guard for ``gp`` / "w/o MB", whose
        unaries the geometric mean does not calibrate; for +Rel+GP it changed nothing measurable); ``code`` =
        the authors' release
        (METHOD_NOTES §1.7: pre-CRF fused argmax, kept iff the larger network peak >= T).
    anchor: labels that every later Y_t keeps whatever the propagation says.  ``supervoxel`` = the paper and
        the authors' code: Y_0, the clicks expanded to their whole super-voxels.  ``click`` = only the clicked
        points; round 1 still trains on Y_0, but from then on a clicked super-voxel is a pseudo label only
        when the selection rule keeps it.
    click_radius_m: a click on an object class labels only the points of its super-voxel within this many metres
        (None = the whole super-voxel, Algorithm 1 line 1).  DEVIATION, by measurement: where super-voxels
        merge a small object into the floor or a wall, one click on the object labelled the whole floor
        segment.  On 12 synthetic rooms Y_0 was 15.9 % of the points at 67.4 % point accuracy with whole
        super-voxels and 12.7 % at 91.7 % with 0.5 m for object clicks: more correct points (11.6 vs 10.7 % of
        all) and a fifth of the wrong ones.  The rest of such a super-voxel is left to the propagation.
    structure_classes: class names whose clicks always take the whole super-voxel (floors, walls: they span
        scenes); None = ``wsseg.core.classes.STRUCTURE_CLASSES`` of the dataset's class table.
    class_weighting: weights of Θ's cross-entropy (Eq. 1), recomputed every round from the pseudo labels it
        trains on: ``none`` (the paper), ``inverse_sqrt_frequency`` (default) or ``inverse_frequency``, normalised
        so that a labelled point weighs 1 on average (the first spellings ``inverse_sqrt`` / ``inverse`` are
        accepted and stored canonical; :mod:`~wsseg_training.methods.common.class_weights`).  DEVIATION, by
        measurement: one click on a floor, ceiling or wall labels a whole large super-voxel, so Y_0 is mostly
        structure (12 synthetic rooms: 42.8 % of the points, nearly all ceiling / floor / wall); unweighted, Θ
        learns that prior, and self-training then floods the small classes with structure labels (5 x 200 steps:
        +GP's pseudo labels 92 % coverage at 40 % mIoU by round 5, 1T1C† 19.9 %; with the inverse square root
        50 % at 81 %, 27.0 %).  ``inverse_frequency`` suits label sets dominated by one class (mOSD: objects are
        5 % of Y_0) and over-weights the rarest of 13 classes.
    """

    variant: str = option("rel_gp", choices=VARIANTS)
    memory_bank: bool = True
    embed_dim: int = option(32, gt=0)
    temperature: float = option(0.07, gt=0)
    momentum: float = option(0.9, ge=0.0, lt=1.0)
    samples_per_class: int = option(20, gt=0)
    sigma_colour: float = option(1.0, gt=0)
    sigma_coords_m: float = option(1.0, gt=0)
    sigma_unet: float = option(1.0, gt=0)
    sigma_relation: float = option(1.0, gt=0)
    lambda_colour: float = option(1.0, ge=0)
    lambda_coords: float = option(1.0, ge=0)
    lambda_unet: float = option(1.0, ge=0)
    lambda_relation: float = option(1.0, ge=0)
    pairwise_weight: float = option(2.0, ge=0)
    pairwise_normalisation: str = option("degree", choices=PAIRWISE_NORMALISATIONS)
    neighbourhood: str = option("dense", choices=NEIGHBOURHOODS)
    max_dense_nodes: int = option(4096, gt=0)
    topk_neighbours: int = option(32, gt=0)
    mean_field_iterations: int = option(5, ge=0)
    confidence_threshold: float = option(0.9, gt=0.0, le=1.0)
    self_training_iterations: int = option(5, gt=0)
    probability_eps: float = option(1e-6, gt=0)
    fusion: str = option("geometric", choices=tuple(FUSION_EXPONENTS))
    selection: str = option("agree", choices=SELECTIONS)
    anchor: str = option("supervoxel", choices=ANCHORS)
    click_radius_m: float | None = option(0.5, gt=0)
    structure_classes: tuple[str, ...] | None = None
    class_weighting: str = option("inverse_sqrt_frequency", choices=CLASS_WEIGHTINGS)

    def validate(self) -> None:
        object.__setattr__(self, "class_weighting", canonical_weighting(self.class_weighting))
        if self.structure_classes is not None:
            if isinstance(self.structure_classes, str) or not all(isinstance(n, str) for n in self.structure_classes):
                raise FieldError("structure_classes", self.structure_classes, "a list of class names or null")
            object.__setattr__(self, "structure_classes", tuple(self.structure_classes))

    @property
    def pairwise_groups(self) -> tuple[str, ...]:
        """Feature groups of the pairwise kernel for this variant (empty: no graph propagation)."""
        return VARIANT_GROUPS[self.variant]

    @property
    def uses_relation(self) -> bool:
        """Whether R is trained and its probabilities multiply Θ's (variant ``rel_gp``)."""
        return self.variant == "rel_gp"

    @property
    def confidence_limit(self) -> float:
        """Largest Eq. 8 confidence (mean -log p) that passes: ``-ln T`` (0.105 for T = 0.9)."""
        return -math.log(self.confidence_threshold)

    def group_scales(self) -> dict[str, float]:
        """Per-group factor sqrt(λ) / σ, so that Eq. 5's exponent is -½ ||scaled difference||²."""
        pairs = {"colour": (self.lambda_colour, self.sigma_colour),
                 "coords": (self.lambda_coords, self.sigma_coords_m),
                 "unet": (self.lambda_unet, self.sigma_unet),
                 "relation": (self.lambda_relation, self.sigma_relation)}
        return {name: math.sqrt(lam) / sigma for name, (lam, sigma) in pairs.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OtocConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"OtocConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
