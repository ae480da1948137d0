"""Options of ``wsseg train --method dsp`` (config ``method:``), one frozen dataclass.

Sources: DSP §3.2-3.4 (Eq. 1-12), §4.2 (modules after the first up-sampling, 600 + 600 epochs); re-implementation
choices the paper leaves open are marked in the field docs and in :mod:`wsseg_training.methods.dsp.method`.

Stage kinds (``stages``, run in order, never two kinds in one stage unless ``joint`` is asked for)::

    basic   L_seg_basic only (Eq. 1), single crops                        = the baseline
    csfr    L_seg_basic + L_CR (Eq. 11), pairs of crops sharing a labelled class
    isfr    L_seg_basic + L_seg_s + L_SR (Eq. 12), single crops
    joint   one-stage CSFR + ISFR: L_seg_basic + L_CR + L_seg_s + L_SR on pairs (DSP Tab. 1 "CSFR+ISFR")
"""

from __future__ import annotations

from dataclasses import dataclass

from wsseg_training.engine.config import FieldError
from wsseg_training.methods.common.class_weights import CLASS_WEIGHTINGS
from wsseg_training.methods.common.options import MethodOptions, option
from wsseg_training.methods.dsp.reallocate import AFFINITY_INITS, AFFINITY_SCALES

STAGE_KINDS = ("basic", "csfr", "isfr", "joint")
#: the kinds that reallocate across the two samples of a pair (they draw pairs)
CROSS_KINDS = ("csfr", "joint")
#: the kinds that reallocate inside each sample
INTRA_KINDS = ("isfr", "joint")
BN_STATISTICS = ("frozen", "update")
#: what L_CR / L_SR compare: the decoder's logits Z, or softmax(Z)
CONSISTENCY_SPACES = ("logits", "probabilities")
#: where the reallocated branches' losses send gradients
BRANCH_GRADIENTS = ("everything", "features")


@dataclass(frozen=True, kw_only=True)
class DspOptions(MethodOptions):
    """Every DSP knob (module docstring)."""

    stages: tuple[str, ...] = option(("csfr", "isfr"), doc="stage kinds in order: DSP = [csfr, isfr]; ablation: "
                                                           "[basic], [csfr], [isfr], [joint], [isfr, csfr]")
    stage_shares: tuple[float, ...] | None = option(None, doc="each stage's share of the run's steps (null = equal; "
                                                              "the paper: 600 + 600 epochs)")
    attach_level: int = option(-2, doc="U-Net decoder level of F (negative = from the bottom): -2 = the output of "
                                       "the first up-sampling stage, the second-coarsest level (DSP §4.2)")
    cr_weight: float = option(1.0, ge=0, doc="factor on L_CR (Eq. 11 has 1)")
    sr_weight: float = option(1.0, ge=0, doc="factor on L_SR (Eq. 12 has 1)")
    intra_segmentation: bool = option(True, doc="L_seg_s, CE on the ISFR branch (Eq. 10); false = Tab. 2b "
                                                "'basic + SR'")
    cross_segmentation: bool = option(False, doc="L_seg_c, CE on the CSFR branch: NOT in DSP (Tab. 2a shows it "
                                                 "hurts); true only for that ablation row")
    detach_basic: bool = option(False, doc="stop gradients through Z_i in L_CR / L_SR (the paper does not say; "
                                           "false = Eq. 5 / 9 as written, both branches pulled together)")
    consistency_space: str = option("probabilities", choices=CONSISTENCY_SPACES,
                                    doc="what L_CR / L_SR compare: probabilities = softmax(Z), each voxel's term in "
                                        "[0, 2] (our default: above logits in every run measured, "
                                        "bench/results/dsp_2000steps.md); logits = Z as the decoder outputs it")
    branch_gradient: str = option("everything", choices=BRANCH_GRADIENTS,
                                  doc="what the reallocated branches' losses (L_CR, L_SR, L_seg_s, L_seg_c) train: "
                                      "everything = every weight on their path, decoder included (as written); "
                                      "features = only the level's features and W (the branch's decoder pass uses "
                                      "detached weights and skips), so the decoder cannot meet L_CR / L_SR by "
                                      "ignoring the reallocated level")
    affinity_scale: str = option("sqrt_k", choices=AFFINITY_SCALES,
                                 doc="logit scale of F W F^T: none = the paper's unscaled form, sqrt_k = 1/sqrt(K) "
                                     "(our default: the unscaled softmax saturates, see the method docstring)")
    affinity_init: str = option("identity", choices=AFFINITY_INITS, doc="initial W_c / W_s")
    chunk_rows: int = option(0, ge=0, doc="exact chunking of the affinity product, query rows per chunk "
                                          "(0 = none); memory O(chunk_rows x N_j) instead of O(N_i x N_j)")
    branch_bn_statistics: str = option("frozen", choices=BN_STATISTICS,
                                       doc="BatchNorm running statistics during the reallocated branches' decoder "
                                           "pass: frozen = only the basic branch updates them (what is exported)")
    stage_restart_schedule: bool = option(False, doc="warm-up and decay the learning rate again in each later "
                                                     "stage (false = one schedule over the whole run)")
    class_weighting: str = option("none", choices=CLASS_WEIGHTINGS,
                                  doc="per-class weights of every cross-entropy term (as method full)")

    def validate(self) -> None:
        unknown = [s for s in self.stages if s not in STAGE_KINDS]
        if not self.stages or unknown:
            raise FieldError("stages", list(self.stages), f"a non-empty list of {STAGE_KINDS}")
        if self.stage_shares is not None:
            shares = list(self.stage_shares)
            if len(shares) != len(self.stages) or any(not s > 0 for s in shares):
                raise FieldError("stage_shares", shares, f"{len(self.stages)} positive numbers (one per stage) or null")
        if self.attach_level == 0:
            raise FieldError("attach_level", 0, "a decoder level above the finest: >= 1, or negative from the bottom")
        if self.cross_segmentation and not any(s in CROSS_KINDS for s in self.stages):
            raise FieldError("cross_segmentation", True, f"false unless a stage is one of {CROSS_KINDS}")

    def shares(self) -> list[float]:
        """Each stage's share of the run, summing to 1."""
        raw = list(self.stage_shares) if self.stage_shares is not None else [1.0] * len(self.stages)
        return [s / sum(raw) for s in raw]
