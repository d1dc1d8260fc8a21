"""How the outputs show a leg's flags: the ones that take its CPAK type away, and the rest.

The overlay draws the first kind in red and the rest in amber; the HTML report colours its
badges the same way. Which flags remove the type is decided in :mod:`cpak_cli.core.measurement`
and :mod:`cpak_cli.pipeline.film`; this set only names them for display (README, "Flags").
"""

from __future__ import annotations

from typing import Final

from cpak_cli.core.measurement import FLAG_ANGLE_RANGE, FLAG_GEOMETRY, FLAG_JOINT_DISAGREEMENT, FLAG_LATERALITY, FLAG_SIZE

#: Flags whose leg gets no CPAK type (its angles are still reported).
TYPE_REMOVING_FLAGS: Final[frozenset[str]] = frozenset(
    {FLAG_ANGLE_RANGE, FLAG_GEOMETRY, FLAG_SIZE, FLAG_LATERALITY, FLAG_JOINT_DISAGREEMENT}
)


def removes_type(flag: str) -> bool:
    """True for a flag that takes the leg's CPAK type away (drawn red); False for an
    informational one (drawn amber), unknown flags included."""
    return flag in TYPE_REMOVING_FLAGS
