"""The annotation of one scene as the tool edits it: clicks, scene tags, sub-cloud ball tags, undo / redo.

Pure data, no files and no HTTP: :mod:`wsseg_training.annotate.session` owns the dataset, the file and
the lock, and turns these states into the weak-label objects of :mod:`wsseg_training.labels`.

An edit is a JSON operation (what the browser sends), validated here with errors that name the field and
the value:

* ``{"op": "add_click", "point": i, "class": c}``: a click on point ``i`` (a new object, so a new instance
  number; a second click on the same point changes that click's class);
* ``{"op": "delete_click", "point": i}``;
* ``{"op": "set_tag", "class": c, "on": true|false}`` (scene tags);
* ``{"op": "set_ball", "ball": b, "class": c, "on": true|false}`` (sub-cloud tags of ball ``b``).

Every edit pushes the previous state on the scene's undo stack and clears its redo stack.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

#: edit operations per weak-label kind
OPERATIONS: dict[str, tuple[str, ...]] = {
    "clicks": ("add_click", "delete_click"),
    "scene_tags": ("set_tag",),
    "subcloud_tags": ("set_ball",),
}
#: undo steps kept per scene
HISTORY_LIMIT = 500


class EditError(ValueError):
    """An edit operation is malformed or does not fit the scene; the message names the field and the value."""


@dataclass
class Click:
    """One click: point index into the scene record, class id, instance number (unique within the scene)."""

    point: int
    cls: int
    instance: int


@dataclass
class SceneState:
    """clicks in the order made; tags: class ids; balls: sub-cloud ball index -> ticked class ids."""

    clicks: list[Click] = field(default_factory=list)
    tags: set[int] = field(default_factory=set)
    balls: dict[int, set[int]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.clicks and not self.tags and not any(self.balls.values())

    def next_instance(self) -> int:
        return max((c.instance for c in self.clicks), default=-1) + 1

    def to_json(self) -> dict[str, Any]:
        return {"clicks": [{"point": c.point, "class": c.cls, "instance": c.instance} for c in self.clicks],
                "tags": sorted(self.tags),
                "balls": {str(b): sorted(v) for b, v in sorted(self.balls.items()) if v}}


def _integer(op: dict[str, Any], key: str) -> int:
    if key not in op:
        raise EditError(f"edit {op.get('op')!r}: missing field {key!r}")
    value = op[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditError(f"edit {op.get('op')!r}: field {key!r} must be an integer, got {value!r}")
    return value


def _flag(op: dict[str, Any]) -> bool:
    value = op.get("on")
    if not isinstance(value, bool):
        raise EditError(f"edit {op.get('op')!r}: field 'on' must be true or false, got {value!r}")
    return value


class SceneHistory:
    """A scene's state with its undo and redo stacks.

    num_points: N of the scene record; num_classes: C of the class table; num_balls: sub-cloud balls of
    the scene (0 unless the kind is ``subcloud_tags``).
    """

    def __init__(self, kind: str, num_points: int, num_classes: int, num_balls: int = 0,
                 state: SceneState | None = None) -> None:
        if kind not in OPERATIONS:
            raise ValueError(f"kind {kind!r} cannot be annotated (known: {', '.join(OPERATIONS)})")
        self.kind = kind
        self.num_points = num_points
        self.num_classes = num_classes
        self.num_balls = num_balls
        self.state = state or SceneState()
        self.undo_stack: list[SceneState] = []
        self.redo_stack: list[SceneState] = []

    # ---------------------------------------------------------------- checks

    def _point(self, op: dict[str, Any]) -> int:
        point = _integer(op, "point")
        if not 0 <= point < self.num_points:
            raise EditError(f"edit {op['op']!r}: point {point} outside the cloud (N={self.num_points})")
        return point

    def _class(self, op: dict[str, Any]) -> int:
        cls = _integer(op, "class")
        if not 0 <= cls < self.num_classes:
            raise EditError(f"edit {op['op']!r}: class {cls} outside the class table (0..{self.num_classes - 1})")
        return cls

    def _ball(self, op: dict[str, Any]) -> int:
        ball = _integer(op, "ball")
        if not 0 <= ball < self.num_balls:
            raise EditError(f"edit {op['op']!r}: ball {ball} is not one of the scene's {self.num_balls} sub-clouds")
        return ball

    # ---------------------------------------------------------------- edits

    def apply(self, op: Any) -> None:
        """Validate and apply one edit (see the module docstring); ``EditError`` leaves the state unchanged."""
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise EditError(f"an edit must be a JSON object with a field 'op', got {op!r}")
        name = op["op"]
        allowed = OPERATIONS[self.kind]
        if name not in allowed:
            raise EditError(f"edit {name!r} does not apply to a {self.kind} file (allowed: {', '.join(allowed)})")
        after = copy.deepcopy(self.state)
        if name == "add_click":
            point, cls = self._point(op), self._class(op)
            existing = next((c for c in after.clicks if c.point == point), None)
            if existing is not None:
                existing.cls = cls
            else:
                after.clicks.append(Click(point=point, cls=cls, instance=after.next_instance()))
        elif name == "delete_click":
            point = self._point(op)
            kept = [c for c in after.clicks if c.point != point]
            if len(kept) == len(after.clicks):
                raise EditError(f"edit 'delete_click': no click on point {point}")
            after.clicks = kept
        elif name == "set_tag":
            cls, on = self._class(op), _flag(op)
            (after.tags.add if on else after.tags.discard)(cls)
        else:
            ball, cls, on = self._ball(op), self._class(op), _flag(op)
            ticked = after.balls.setdefault(ball, set())
            (ticked.add if on else ticked.discard)(cls)
            if not ticked:
                del after.balls[ball]
        self.undo_stack.append(self.state)
        del self.undo_stack[:-HISTORY_LIMIT]
        self.redo_stack.clear()
        self.state = after

    def undo(self) -> bool:
        """Back one edit; False when there is nothing to undo."""
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.state)
        self.state = self.undo_stack.pop()
        return True

    def redo(self) -> bool:
        """Forward one undone edit; False when there is nothing to redo."""
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.state)
        self.state = self.redo_stack.pop()
        return True
