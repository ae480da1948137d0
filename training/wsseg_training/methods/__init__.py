"""Training methods: plugins over the one engine (see :mod:`wsseg_training.methods.base`).

``METHODS`` maps the ``wsseg train --method`` name to its class.
"""

from wsseg_training.methods.base import Method, StepContext
from wsseg_training.methods.densify.method import DensifyMethod
from wsseg_training.methods.dsp.method import DspMethod
from wsseg_training.methods.full import FullMethod
from wsseg_training.methods.mprm.method import MprmMethod
from wsseg_training.methods.otoc.method import OtocMethod
from wsseg_training.methods.ws3d.method import Ws3dMethod

METHODS: dict[str, type[Method]] = {
    "densify": DensifyMethod,
    "dsp": DspMethod,
    "full": FullMethod,
    "mprm": MprmMethod,
    "otoc": OtocMethod,
    "ws3d": Ws3dMethod,
}


def get_method(name: str) -> type[Method]:
    """The method class called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}") from None


__all__ = ["METHODS", "DensifyMethod", "DspMethod", "FullMethod", "Method", "MprmMethod", "OtocMethod", "StepContext",
           "Ws3dMethod", "get_method"]
