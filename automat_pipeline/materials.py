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
            raise ValueError(f"fallback material {self.fallback!r} is not in the library")
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
        raise ValueError(f"fallback material {fallback!r} is not in the library")
    return {
        "fallback": fallback,
        "materials": {
            m.name: {"base_color": list(m.base_color), "metallic": m.metallic, "roughness": m.roughness}
            for m in library.values()
        },
    }
