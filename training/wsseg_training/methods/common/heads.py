"""Per-voxel heads a method may export beside the segmentation logits (``Method.export_heads``).

A :class:`PointHead` is a small MLP over the backbone's ``point_features`` (M_0, F): Linear (+ ReLU) layers,
nothing else, so that it rebuilds from its own config in a weights-only checkpoint and exports to ONNX with the
ops the backbone already uses (MatMul / Gemm, Add, Relu).  Example: WS3D's instance branch predicts a per-voxel
offset to the instance centre, ``PointHead(F, (F,), 3)``, exported as ``instance_offsets`` (M_0, 3) metres.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

#: what an exported output may be called (``logits`` is the segmentation output)
OUTPUT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class PointHead(nn.Module):
    """MLP (M, in_channels) -> (M, out_channels): Linear, ReLU, ..., Linear (no activation at the end).

    hidden: widths of the hidden layers (empty: one linear layer).  description: what the output means, with its
    unit (written into the bundle's model.yaml).  attributes: plain JSON data the method records with the output
    (model.pt and model.yaml ``extra_outputs[i].attributes``; WS3D: the instance clustering settings).
    """

    def __init__(self, in_channels: int, hidden: tuple[int, ...], out_channels: int, description: str = "",
                 attributes: dict[str, Any] | None = None) -> None:
        super().__init__()
        widths = (in_channels, *hidden, out_channels)
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)
        self.spec = {"in_channels": int(in_channels), "hidden": [int(h) for h in hidden],
                     "out_channels": int(out_channels), "description": str(description)}
        if attributes:
            self.spec["attributes"] = dict(attributes)

    @property
    def out_channels(self) -> int:
        return int(self.spec["out_channels"])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)

    def to_checkpoint(self) -> dict[str, Any]:
        """{"spec": ..., "state": state_dict on the CPU}: plain data for a weights-only checkpoint."""
        return {"spec": dict(self.spec), "state": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> PointHead:
        spec = data["spec"]
        head = cls(spec["in_channels"], tuple(spec["hidden"]), spec["out_channels"], spec.get("description", ""),
                   spec.get("attributes"))
        head.load_state_dict(data["state"])
        return head


def heads_to_checkpoint(heads: dict[str, PointHead]) -> dict[str, dict[str, Any]]:
    """{name: head} -> checkpoint data; ``ValueError`` for a name that is not a lower-case identifier or 'logits'."""
    for name in heads:
        if not OUTPUT_NAME.match(name) or name == "logits":
            raise ValueError(f"exported output name {name!r}: expected a lower-case identifier other than 'logits'")
    return {name: head.to_checkpoint() for name, head in heads.items()}


def heads_from_checkpoint(checkpoint: dict[str, Any]) -> dict[str, PointHead]:
    """The exported heads a checkpoint holds ({} when it has none)."""
    return {name: PointHead.from_checkpoint(data) for name, data in (checkpoint.get("heads") or {}).items()}
