"""DSP: cross-sample (CSFR) then intra-sample (ISFR) feature reallocation from sparse point labels
(:mod:`wsseg_training.methods.dsp.method`)."""

from wsseg_training.methods.dsp.method import DspMethod
from wsseg_training.methods.dsp.options import DspOptions

__all__ = ["DspMethod", "DspOptions"]
