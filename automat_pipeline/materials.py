"""Material library and resolution: which library material each CAD part is rendered with.

Pure and picklable, so the isolated CAD worker can resolve parts without a database. The order:
the part name is a library material's name; an alias (exact, or a ``*``/``?`` pattern) names one;
the product's catalogue assignment names one (directly or through an alias); else the tenant's
fallback, magenta, so an unresolved part is impossible to miss in a render.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from automat_pipeline.errors import AutomatError

FALLBACK = "SCHAEFFLER_059999_FailedMaterial"


@dataclass(frozen=True)
class Material:
    """PBR parameters the render stage turns into a Blender Principled BSDF."""

    name: str
    base_color: tuple[float, float, float]  # linear RGB, 0..1
    metallic: float
    roughness: float
    description: str = ""


# The shipped library (also seeded into the database by migration 0003).
LIBRARY = [
    Material("SCHAEFFLER_010101_Steel-Bare", (0.62, 0.63, 0.65), 1.0, 0.35, "bare bearing steel, turned"),
    Material("SCHAEFFLER_010102_Steel-Polished", (0.80, 0.80, 0.82), 1.0, 0.12, "polished rolling elements"),
    Material("SCHAEFFLER_020201_Brass-Cage", (0.78, 0.58, 0.27), 1.0, 0.30, "machined brass cage"),
    Material("SCHAEFFLER_030301_Polyamide-Cage", (0.05, 0.05, 0.05), 0.0, 0.55, "glass-fibre polyamide cage"),
    Material("SCHAEFFLER_040401_Rubber-Seal", (0.02, 0.02, 0.02), 0.0, 0.85, "NBR rubber seal"),
    Material(FALLBACK, (1.0, 0.0, 1.0), 0.0, 0.5, "unresolved part: fix the alias table or the catalogue"),
]
# Default aliases (global, lowest priority among aliases); tenants add their own.
ALIASES = [
    ("*Ring*", "SCHAEFFLER_010101_Steel-Bare"),
    ("*Washer*", "SCHAEFFLER_010101_Steel-Bare"),
    ("Cup", "SCHAEFFLER_010101_Steel-Bare"),
    ("Cone", "SCHAEFFLER_010101_Steel-Bare"),
    ("Ball_*", "SCHAEFFLER_010102_Steel-Polished"),
    ("Roller_*", "SCHAEFFLER_010102_Steel-Polished"),
    ("*Seal*", "SCHAEFFLER_040401_Rubber-Seal"),
    ("*Dichtung*", "SCHAEFFLER_040401_Rubber-Seal"),
]


@dataclass(frozen=True)
class Decision:
    part: str
    material: str
    source: str  # "exact match" | "alias match" | "catalogue assignment" | "fallback"
    detail: str = ""

    def log_line(self) -> str:
        detail = f", {self.detail}" if self.detail else ""
        return f"[MATERIAL] part {self.part!r} → {self.material!r} ({self.source}{detail})"


@dataclass
class MaterialResolver:
    library: dict[str, Material]
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (pattern, material name), first match wins
    assigned: dict[str, str] = field(default_factory=dict)  # the product's catalogue: part → material as written
    fallback: str = FALLBACK

    def __post_init__(self):
        if self.fallback not in self.library:
            raise AutomatError("unknown_material", f"fallback material {self.fallback!r} is not in the library")
        self._patterns = [(re.compile(fnmatch.translate(p), re.I), p, m) for p, m in self.aliases]

    def _alias(self, name: str) -> tuple[str, str] | None:
        for regex, pattern, material in self._patterns:
            if material in self.library and regex.match(name):
                return material, pattern
        return None

    def resolve(self, part: str) -> Decision:
        if part in self.library:
            return Decision(part, part, "exact match")
        alias = self._alias(part)
        if alias:
            return Decision(part, alias[0], "alias match", f"pattern {alias[1]!r}")
        written = self.assigned.get(part)
        if written:
            if written in self.library:
                return Decision(part, written, "catalogue assignment")
            alias = self._alias(written)
            if alias:
                return Decision(part, alias[0], "catalogue assignment", f"{written!r} via alias {alias[1]!r}")
            return Decision(part, self.fallback, "fallback", f"catalogue names unknown material {written!r}")
        return Decision(part, self.fallback, "fallback", "no rule matched")


def for_blender(library: dict[str, Material], fallback: str) -> dict:
    """The library as ``blender/automat_blender/materials.py`` reads it (JSON)."""
    if fallback not in library:
        raise AutomatError("unknown_material", f"fallback material {fallback!r} is not in the library")
    return {
        "fallback": fallback,
        "materials": {
            m.name: {"base_color": list(m.base_color), "metallic": m.metallic, "roughness": m.roughness}
            for m in library.values()
        },
    }


Unit = Annotated[float, Field(ge=0, le=1)]


class MaterialIn(BaseModel):
    """A tenant's own library material (same name as a shipped one: the tenant's wins)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,199}$",
        description="How parts, aliases and catalogues name it; 1-200 of letters, digits, space . _ -.",
        examples=["ACME_Zinc-Plated"],
    )
    base_color: tuple[Unit, Unit, Unit] = Field(
        description="Linear RGB, each 0..1 (not sRGB: 0.5 is darker than it looks in a colour picker).",
        examples=[[0.7, 0.7, 0.72]],
    )
    metallic: float = Field(ge=0, le=1, description="0 for plastics and rubber, 1 for bare metal.")
    roughness: float = Field(ge=0, le=1, description="0 is a mirror, 1 is fully matte.")
    description: str = Field("", max_length=2000, description="What it is, for the people choosing it.")

    def as_material(self) -> Material:
        return Material(self.name, tuple(self.base_color), self.metallic, self.roughness, self.description)


class AliasIn(BaseModel):
    """A part name, exact or a pattern (``*`` any run of characters, ``?`` one), and the library
    material parts it matches get."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(
        pattern=r"^[^\x00-\x1f\[\]]{1,200}$",
        description="A part name, or a pattern with * and ? (case-insensitive); brackets are not allowed.",
        examples=["*Inner_Ring*"],
    )
    material: str = Field(min_length=1, max_length=200, description="A material of the tenant's library.")


def alias_problems(aliases: list[AliasIn], library: set[str]) -> list[str]:
    """Why an ordered alias list would surprise: a material the library lacks, the same pattern twice,
    or a pattern an earlier one always wins over (it could never match). Aliases name library
    materials directly, one step, so there are no chains and no cycles."""
    problems, seen = [], []
    for position, alias in enumerate(aliases, 1):
        if alias.material not in library:
            problems.append(f"alias {position} ({alias.pattern!r}): material {alias.material!r} is not in the library")
        for earlier_position, earlier in seen:
            if alias.pattern.lower() == earlier.pattern.lower():
                problems.append(f"alias {position} ({alias.pattern!r}) repeats alias {earlier_position}")
            elif fnmatch.fnmatchcase(alias.pattern.lower(), earlier.pattern.lower()):
                problems.append(
                    f"alias {position} ({alias.pattern!r}) can never match: alias {earlier_position} "
                    f"({earlier.pattern!r}) comes first and matches every part it matches"
                )
        seen.append((position, alias))
    return problems


def changed_parts(parts: list[str], before: MaterialResolver, after: MaterialResolver) -> dict[str, tuple[str, str]]:
    """The parts a change of library or aliases changes: part → (material before, after). A part
    changes when it resolves to another material, or to one whose colour, metallic or roughness
    changed (its renders change either way)."""
    changes = {}
    for part in parts:
        old, new = before.resolve(part).material, after.resolve(part).material
        if old != new or _look(before.library[old]) != _look(after.library[new]):
            changes[part] = (old, new)
    return changes


def _look(material: Material) -> tuple:
    return tuple(material.base_color), material.metallic, material.roughness
