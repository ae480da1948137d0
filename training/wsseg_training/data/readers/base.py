"""What every reader yields, and the errors it raises."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsseg.core.classes import ClassTable
from wsseg.core.scene import Scene


class ReaderError(ValueError):
    """A source dataset is missing files or holds malformed ones; the message names the file and field."""


@dataclass
class ReadScene:
    """One converted scene: its unique name, split (None: in no split) and YAML-able metadata."""

    name: str
    scene: Scene
    split: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Reader(Protocol):
    """A source of scenes: a class table, a sensor kind, a scene count for progress, and the scenes."""

    name: str
    classes: ClassTable
    sensor: str

    def __len__(self) -> int:
        """Number of scenes the iteration will yield (for progress bars)."""
        ...

    def __iter__(self) -> Iterator[ReadScene]:
        ...
