"""Per-method options: one frozen dataclass per method, built by the training config loader.

A method declares its options once, with defaults, units in the names and the valid range::

    @dataclass(frozen=True, kw_only=True)
    class DspOptions(MethodOptions):
        stage1_epochs: int = option(600, ge=1, doc="CSFR stage length [DSP §3.4]")
        attach_level: str = option("up1", choices=("up1", "up2"))
        affinity_scale: float | None = option(None, gt=0)

    class DspMethod(Method):
        Options = DspOptions

The YAML's ``method:`` mapping is converted field by field by the loader
(:func:`wsseg_training.engine.config.build_dataclass`: types checked, lists to tuples, nested dataclasses
built recursively), then every ``option`` constraint is checked, then :meth:`MethodOptions.validate` runs
for checks across fields.  A bad value names the file and the dotted field::

    configs/x.yaml: field 'method.stage1_epochs' is -3, expected an integer >= 1

Constraints: ``ge`` / ``gt`` / ``le`` / ``lt`` bounds (None values pass: use ``T | None`` for optional fields),
``choices`` (a tuple of allowed values).  Raise :class:`~wsseg_training.engine.config.FieldError` from
``validate`` to name a field yourself.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from wsseg_training.engine.config import ConfigError, FieldError, build_dataclass

T = TypeVar("T", bound="MethodOptions")


@dataclass(frozen=True)
class Constraint:
    """The valid values of one option (see :func:`option`)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def holds(self, value: Any) -> bool:
        if value is None:
            return True
        if self.choices is not None and value not in self.choices:
            return False
        checks = ((self.ge, lambda b: value >= b), (self.gt, lambda b: value > b),
                  (self.le, lambda b: value <= b), (self.lt, lambda b: value < b))
        return all(bound is None or test(bound) for bound, test in checks)

    def describe(self, kind: str) -> str:
        """'an integer >= 1', 'a number in (0, 1]', "one of ('a', 'b')"."""
        if self.choices is not None:
            return f"one of {self.choices}"
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            return f"{kind} in {'[' if self.ge is not None else '('}{low}, {high}{']' if self.le is not None else ')'}"
        if low is not None:
            return f"{kind} {'>=' if self.ge is not None else '>'} {low}"
        if high is not None:
            return f"{kind} {'<=' if self.le is not None else '<'} {high}"
        return kind


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           choices: tuple[Any, ...] | None = None, doc: str = "") -> Any:
    """A dataclass field with a :class:`Constraint` and a one-line description (module docstring)."""
    metadata = {"constraint": Constraint(ge=ge, gt=gt, le=le, lt=lt, choices=choices), "doc": doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _kind(hint: Any) -> str:
    """How an error names the expected type: 'an integer', 'a number', 'a string'."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(args[0], "a value")


@dataclass(frozen=True, kw_only=True)
class MethodOptions:
    """Base class of every method's options (no fields: a method without options accepts an empty mapping)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            constraint = f.metadata.get("constraint")
            value = getattr(self, f.name)
            if constraint is not None and not constraint.holds(value):
                raise FieldError(f.name, value, constraint.describe(_kind(hints[f.name])))
        self.validate()

    def validate(self) -> None:
        """Checks across fields; raise :class:`FieldError` naming the field at fault."""

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """The raw YAML mapping before it is built: checks across fields that typing cannot express (a field that
        must not be given twice), YAML ``null`` for an empty section.  ``where`` = "FILE: field 'method'"."""
        return data

    @classmethod
    def build(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
        """The options of the YAML ``method:`` mapping ``data``; ``where`` names the file (errors say
        ``"{where}: field 'method.NAME' ..."``)."""
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{where}: field 'method' is {data!r}, expected a mapping of {cls.__name__} fields")
        section = f"{where}: field 'method'"
        return build_dataclass(cls, cls.prepare(dict(data or {}), section), section)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def table(cls) -> list[tuple[str, str, str]]:
        """(name, default, description with the valid range) of every option, for docs and ``--help``."""
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
            constraint = f.metadata.get("constraint")
            valid = constraint.describe(_kind(hints[f.name])) if constraint is not None else _kind(hints[f.name])
            rows.append((f.name, repr(default), f"{f.metadata.get('doc', '')} ({valid})".strip()))
        return rows
