"""What ``verify`` found: damaged data, damaged side files, and what repair did."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Damage", "SideDamage", "VerifyReport"]


@dataclass
class Damage:
    """Damaged logical rows ``[start, stop)`` of one field: the data itself does not match
    its checksum, or cannot be read. Repair drops these rows (and only these)."""

    field: str
    start: int
    stop: int
    reason: str

    def __str__(self) -> str:
        rows = f"rows {self.start}..{self.stop - 1}" if self.stop > self.start else "no rows"
        return f"{self.field}: {rows}: {self.reason}"


@dataclass
class SideDamage:
    """A damaged side file (checksums, a class index, ``.live``, a missing fill-value chunk,
    the state in ``zarr.json``): repaired from the data, never by dropping rows.

    ``action`` is what repair does: ``"checksums"``, ``"index"``, ``"live"``, ``"chunk"``,
    ``"array_meta"`` or ``"state"``; ``target`` names the field / index / chunk."""

    what: str
    reason: str
    action: str
    target: str = ""
    unverified: int = 0  # rows kept that could not be checked because of it

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass
class VerifyReport:
    path: str
    ok: bool = True
    rows: int = 0
    rows_checked: int = 0
    blocks_checked: int = 0
    problems: list[str] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    side: list[SideDamage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: str | None = None
    writer_pid: str | None = None  # another process held the writer lock while verifying

    @property
    def unverified(self) -> int:
        """Rows kept whose checksums were damaged (they could not be verified)."""
        return sum(s.unverified for s in self.side)

    def lines(self) -> list[str]:
        out = [f"{self.path}: {'OK' if self.ok else 'DAMAGED'} — {self.rows:,} committed rows, "
               f"{self.blocks_checked:,} blocks checked"]
        out += [f"  metadata: {p}" for p in self.problems]
        out += [f"  {d}" for d in self.damage]
        out += [f"  side file: {s}" for s in self.side]
        out += [f"  note: {n}" for n in self.notes]
        if self.repaired:
            out.append(f"  repaired: {self.repaired}")
        return out
