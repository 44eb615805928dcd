"""Parametric bearing assemblies for the demo catalogue, written as STEP with cadquery.

Each bearing is an XCAF assembly of named, coloured parts: rings (or washers), rolling elements
as instances of one shape, and a cage. Dimensions follow the ISO boundary plans of common sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cadquery as cq

STEEL = cq.Color(0.72, 0.73, 0.76)
ROLLER_STEEL = cq.Color(0.55, 0.56, 0.6)
BRASS = cq.Color(0.78, 0.6, 0.25)
POLYAMIDE = cq.Color(0.15, 0.15, 0.15)


@dataclass(frozen=True)
class Bearing:
    pim_id: str
    name: str
    kind: str  # deep_groove_ball | cylindrical_roller | tapered_roller | thrust_ball
    bore: float  # d, mm
    outer: float  # D, mm
    width: float  # B (or H for thrust bearings), mm

    @property
    def lagertyp(self) -> str:
        return {
            "deep_groove_ball": "Rillenkugellager",
            "cylindrical_roller": "Zylinderrollenlager",
            "tapered_roller": "Kegelrollenlager",
            "thrust_ball": "Axial-Rillenkugellager",
        }[self.kind]


CATALOGUE = [
    Bearing("DGBB-6204", "Deep groove ball bearing 6204", "deep_groove_ball", 20, 47, 14),
    Bearing("DGBB-6206", "Deep groove ball bearing 6206", "deep_groove_ball", 30, 62, 16),
    Bearing("CRB-NU204", "Cylindrical roller bearing NU204", "cylindrical_roller", 20, 47, 14),
    Bearing("TRB-30204", "Tapered roller bearing 30204", "tapered_roller", 20, 47, 15.25),
    Bearing("TBB-51104", "Thrust ball bearing 51104", "thrust_ball", 20, 35, 10),
]


def ring(r_in: float, r_out: float, z0: float, z1: float) -> cq.Workplane:
    """A ring of rectangular cross-section about the Z axis."""
    return cq.Workplane("XY").workplane(offset=z0).circle(r_out).circle(r_in).extrude(z1 - z0)


def revolved(points: list[tuple[float, float]]) -> cq.Workplane:
    """A solid of revolution about Z from an (r, z) profile."""
    return cq.Workplane("XZ").polyline(points).close().revolve(360, (0, 0, 0), (0, 1, 0))


def on_circle(radius: float, count: int, z: float = 0.0) -> list[cq.Location]:
    return [
        cq.Location(cq.Vector(radius * math.cos(a), radius * math.sin(a), z), cq.Vector(0, 0, 1), math.degrees(a))
        for a in (2 * math.pi * i / count for i in range(count))
    ]


def assembly(b: Bearing) -> cq.Assembly:
    build = {"deep_groove_ball": _deep_groove_ball, "cylindrical_roller": _cylindrical_roller,
             "tapered_roller": _tapered_roller, "thrust_ball": _thrust_ball}[b.kind]
    return build(b)


def write_step(b: Bearing, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assembly(b).export(str(path), "STEP")
    return path


def _assemble(b: Bearing, rings: dict[str, cq.Workplane], element: cq.Workplane, element_name: str,
              locations: list[cq.Location], cage: cq.Workplane, pocket: cq.Shape, cage_color: cq.Color) -> cq.Assembly:
    """Rings, one rolling element placed at every location, and a cage with a pocket at each."""
    for loc in locations:
        cage = cage.cut(pocket.moved(loc))
    a = cq.Assembly(name=b.pim_id)
    for name, shape in rings.items():
        a.add(shape, name=name, color=STEEL)
    for i, loc in enumerate(locations, start=1):
        a.add(element, name=f"{element_name}_{i}", loc=loc, color=ROLLER_STEEL)
    a.add(cage, name="Cage", color=cage_color)
    return a


def _deep_groove_ball(b: Bearing) -> cq.Assembly:
    pitch = (b.bore + b.outer) / 4
    ball_r = (b.outer - b.bore) * 0.3 / 2
    groove = cq.Workplane().add(cq.Solid.makeTorus(pitch, ball_r * 1.02))
    rings = {
        "Outer_Ring": ring(pitch + ball_r * 0.55, b.outer / 2, -b.width / 2, b.width / 2).cut(groove),
        "Inner_Ring": ring(b.bore / 2, pitch - ball_r * 0.55, -b.width / 2, b.width / 2).cut(groove),
    }
    count = max(6, int(2 * math.pi * pitch / (ball_r * 2 * 1.35)))
    cage = ring(pitch - ball_r * 0.3, pitch + ball_r * 0.3, -ball_r * 0.8, ball_r * 0.8)
    return _assemble(b, rings, cq.Workplane().sphere(ball_r), "Ball", on_circle(pitch, count), cage,
                     cq.Workplane().sphere(ball_r * 1.05).val(), BRASS)


def _cylindrical_roller(b: Bearing) -> cq.Assembly:
    pitch = (b.bore + b.outer) / 4
    roller_r = (b.outer - b.bore) * 0.24 / 2
    length = b.width * 0.6
    rings = {
        # Outer ring with two ribs guiding the rollers (type NU).
        "Outer_Ring": revolved([
            (pitch + roller_r, -b.width / 2), (b.outer / 2, -b.width / 2), (b.outer / 2, b.width / 2),
            (pitch + roller_r, b.width / 2), (pitch + roller_r, length / 2),
            (pitch + roller_r * 0.8, length / 2 + 0.6), (pitch + roller_r * 0.8, -length / 2 - 0.6),
            (pitch + roller_r, -length / 2)]),
        "Inner_Ring": ring(b.bore / 2, pitch - roller_r, -b.width / 2, b.width / 2),
    }
    count = max(8, int(2 * math.pi * pitch / (roller_r * 2 * 1.3)))
    roller = cq.Workplane("XY").workplane(offset=-length / 2).circle(roller_r).extrude(length)
    cage = ring(pitch - roller_r * 0.25, pitch + roller_r * 0.25, -length / 2 - 0.5, length / 2 + 0.5)
    pocket = cq.Workplane("XY").workplane(offset=-length / 2 - 0.1).circle(roller_r * 1.05).extrude(length + 0.2)
    return _assemble(b, rings, roller, "Roller", on_circle(pitch, count), cage, pocket.val(), POLYAMIDE)


def _tapered_roller(b: Bearing) -> cq.Assembly:
    pitch = (b.bore + b.outer) / 4
    r_big, r_small = (b.outer - b.bore) * 0.13, (b.outer - b.bore) * 0.1
    length = b.width * 0.7
    rings = {  # raceways follow the rollers' flanks
        "Cup": revolved([(pitch + r_big, -b.width / 2), (b.outer / 2, -b.width / 2), (b.outer / 2, b.width / 2),
                         (pitch + r_small + (r_big - r_small) * 0.2, b.width / 2)]),
        "Cone": revolved([(b.bore / 2, -b.width / 2), (pitch - r_big, -b.width / 2),
                          (pitch - r_small, b.width / 2), (b.bore / 2, b.width / 2)]),
    }
    count = max(8, int(2 * math.pi * pitch / (r_big * 2 * 1.3)))
    roller = cq.Workplane().add(cq.Solid.makeCone(r_big * 0.95, r_small * 0.95, length,
                                                  cq.Vector(0, 0, -length / 2), cq.Vector(0, 0, 1)))
    cage = ring(pitch - r_small * 0.2, pitch + r_small * 0.2, -length / 2, length / 2)
    return _assemble(b, rings, roller, "Roller", on_circle(pitch, count), cage, roller.val().scale(1.04), BRASS)


def _thrust_ball(b: Bearing) -> cq.Assembly:
    pitch = (b.bore + b.outer) / 4
    ball_r = (b.outer - b.bore) * 0.36 / 2
    washer = (b.width - 2 * ball_r * 0.8) / 2
    groove = cq.Workplane().add(cq.Solid.makeTorus(pitch, ball_r * 1.02))
    rings = {
        "Shaft_Washer": ring(b.bore / 2, b.outer / 2 - 0.5, b.width / 2 - washer, b.width / 2).cut(groove),
        "Housing_Washer": ring(b.bore / 2 + 0.5, b.outer / 2, -b.width / 2, -b.width / 2 + washer).cut(groove),
    }
    count = max(8, int(2 * math.pi * pitch / (ball_r * 2 * 1.3)))
    cage = ring(pitch - ball_r * 1.2, pitch + ball_r * 1.2, -ball_r * 0.2, ball_r * 0.2)
    return _assemble(b, rings, cq.Workplane().sphere(ball_r), "Ball", on_circle(pitch, count), cage,
                     cq.Workplane().sphere(ball_r * 1.05).val(), POLYAMIDE)
