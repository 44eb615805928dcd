"""Parametric bearing assemblies for the demo catalogue, written as STEP through OpenCascade XCAF.

Each bearing is an XCAF assembly of named, coloured parts: rings (or washers), rolling elements
as instances of one shape, and a cage. Dimensions follow the ISO boundary plans of common sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from OCP.BRepAlgoAPI import BRepAlgoAPI_Cut
from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeFace, BRepBuilderAPI_MakePolygon, BRepBuilderAPI_Transform
from OCP.BRepPrimAPI import (
    BRepPrimAPI_MakeCone,
    BRepPrimAPI_MakeCylinder,
    BRepPrimAPI_MakeRevol,
    BRepPrimAPI_MakeSphere,
    BRepPrimAPI_MakeTorus,
)
from OCP.gp import gp, gp_Ax1, gp_Ax2, gp_Pnt, gp_Trsf, gp_Vec
from OCP.IFSelect import IFSelect_RetDone
from OCP.Message import Message, Message_Gravity
from OCP.Quantity import Quantity_Color, Quantity_TOC_sRGB
from OCP.STEPCAFControl import STEPCAFControl_Writer
from OCP.STEPControl import STEPControl_AsIs
from OCP.TCollection import TCollection_ExtendedString
from OCP.TDataStd import TDataStd_Name
from OCP.TDF import TDF_Label
from OCP.TDocStd import TDocStd_Document
from OCP.TopLoc import TopLoc_Location
from OCP.TopoDS import TopoDS_Shape
from OCP.XCAFDoc import XCAFDoc_ColorGen, XCAFDoc_DocumentTool

STEEL = Quantity_Color(0.72, 0.73, 0.76, Quantity_TOC_sRGB)
ROLLER_STEEL = Quantity_Color(0.55, 0.56, 0.6, Quantity_TOC_sRGB)
BRASS = Quantity_Color(0.78, 0.6, 0.25, Quantity_TOC_sRGB)
POLYAMIDE = Quantity_Color(0.15, 0.15, 0.15, Quantity_TOC_sRGB)


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


def ring(r_in: float, r_out: float, z0: float, z1: float) -> TopoDS_Shape:
    """A ring of rectangular cross-section about the Z axis."""
    axis = gp_Ax2(gp_Pnt(0, 0, z0), gp.DZ_s())
    return cut(
        BRepPrimAPI_MakeCylinder(axis, r_out, z1 - z0).Shape(), BRepPrimAPI_MakeCylinder(axis, r_in, z1 - z0).Shape()
    )


def revolved(points: list[tuple[float, float]]) -> TopoDS_Shape:
    """A solid of revolution about Z from a closed (r, z) profile."""
    polygon = BRepBuilderAPI_MakePolygon()
    for r, z in points:
        polygon.Add(gp_Pnt(r, 0, z))
    polygon.Close()
    profile = BRepBuilderAPI_MakeFace(polygon.Wire()).Face()
    return BRepPrimAPI_MakeRevol(profile, gp_Ax1(gp_Pnt(0, 0, 0), gp.DZ_s()), 2 * math.pi).Shape()


def cylinder(radius: float, length: float) -> TopoDS_Shape:
    """A cylinder about Z, centred on the origin."""
    return BRepPrimAPI_MakeCylinder(gp_Ax2(gp_Pnt(0, 0, -length / 2), gp.DZ_s()), radius, length).Shape()


def sphere(radius: float) -> TopoDS_Shape:
    return BRepPrimAPI_MakeSphere(radius).Shape()


def torus(major: float, minor: float) -> TopoDS_Shape:
    return BRepPrimAPI_MakeTorus(major, minor).Shape()


def cut(shape: TopoDS_Shape, tool: TopoDS_Shape) -> TopoDS_Shape:
    return BRepAlgoAPI_Cut(shape, tool).Shape()


def on_circle(radius: float, count: int, z: float = 0.0) -> list[gp_Trsf]:
    """``count`` placements around Z, each turned to face the axis."""
    placements = []
    for a in (2 * math.pi * i / count for i in range(count)):
        turn, move = gp_Trsf(), gp_Trsf()
        turn.SetRotation(gp.OZ_s(), a)
        move.SetTranslation(gp_Vec(radius * math.cos(a), radius * math.sin(a), z))
        placements.append(move.Multiplied(turn))
    return placements


def write_step(b: Bearing, path: Path) -> Path:
    """Build ``b`` as an XCAF assembly and write it as AP214 STEP with names and colours."""
    build = {
        "deep_groove_ball": _deep_groove_ball,
        "cylindrical_roller": _cylindrical_roller,
        "tapered_roller": _tapered_roller,
        "thrust_ball": _thrust_ball,
    }[b.kind]
    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    shapes = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    colors = XCAFDoc_DocumentTool.ColorTool_s(doc.Main())
    top = shapes.NewShape()
    _name(top, b.pim_id)

    def add(shape: TopoDS_Shape, name: str, color: Quantity_Color, placements: list[gp_Trsf] | None = None) -> None:
        """One product; one instance of it per placement, named ``name_1``, ``name_2``…"""
        product = shapes.AddShape(shape, False)
        _name(product, name)
        colors.SetColor(product, color, XCAFDoc_ColorGen)
        for i, placement in enumerate(placements or [gp_Trsf()], start=1):
            _name(shapes.AddComponent(top, product, TopLoc_Location(placement)), f"{name}_{i}" if placements else name)

    build(b, add)
    shapes.UpdateAssemblies()
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = STEPCAFControl_Writer()
    writer.SetColorMode(True)
    writer.SetNameMode(True)
    printers = Message.DefaultMessenger_s().Printers()  # the writer prints its statistics otherwise
    levels = [printers.Value(i).GetTraceLevel() for i in range(1, printers.Length() + 1)]
    try:
        for i in range(1, printers.Length() + 1):
            printers.Value(i).SetTraceLevel(Message_Gravity.Message_Warning)
        if not writer.Transfer(doc, STEPControl_AsIs) or writer.Write(str(path)) != IFSelect_RetDone:
            raise RuntimeError(f"OpenCascade could not write {path}")
    finally:
        for i, level in enumerate(levels, start=1):
            printers.Value(i).SetTraceLevel(level)
    return path


def _name(label: TDF_Label, name: str) -> None:
    TDataStd_Name.Set_s(label, TCollection_ExtendedString(name))


def _assemble(
    add,
    rings: dict[str, TopoDS_Shape],
    element: TopoDS_Shape,
    element_name: str,
    placements: list[gp_Trsf],
    cage: TopoDS_Shape,
    pocket: TopoDS_Shape,
    cage_color: Quantity_Color,
) -> None:
    """Rings, one rolling element at every placement, and a cage with a pocket at each."""
    for placement in placements:
        cage = cut(cage, pocket.Moved(TopLoc_Location(placement)))
    for name, shape in rings.items():
        add(shape, name, STEEL)
    add(element, element_name, ROLLER_STEEL, placements)
    add(cage, "Cage", cage_color)


def _deep_groove_ball(b: Bearing, add) -> None:
    pitch = (b.bore + b.outer) / 4
    ball_r = (b.outer - b.bore) * 0.3 / 2
    groove = torus(pitch, ball_r * 1.02)
    rings = {
        "Outer_Ring": cut(ring(pitch + ball_r * 0.55, b.outer / 2, -b.width / 2, b.width / 2), groove),
        "Inner_Ring": cut(ring(b.bore / 2, pitch - ball_r * 0.55, -b.width / 2, b.width / 2), groove),
    }
    count = max(6, int(2 * math.pi * pitch / (ball_r * 2 * 1.35)))
    cage = ring(pitch - ball_r * 0.3, pitch + ball_r * 0.3, -ball_r * 0.8, ball_r * 0.8)
    _assemble(add, rings, sphere(ball_r), "Ball", on_circle(pitch, count), cage, sphere(ball_r * 1.05), BRASS)


def _cylindrical_roller(b: Bearing, add) -> None:
    pitch = (b.bore + b.outer) / 4
    roller_r = (b.outer - b.bore) * 0.24 / 2
    length = b.width * 0.6
    rings = {
        # Outer ring with two ribs guiding the rollers (type NU).
        "Outer_Ring": revolved(
            [
                (pitch + roller_r, -b.width / 2),
                (b.outer / 2, -b.width / 2),
                (b.outer / 2, b.width / 2),
                (pitch + roller_r, b.width / 2),
                (pitch + roller_r, length / 2),
                (pitch + roller_r * 0.8, length / 2 + 0.6),
                (pitch + roller_r * 0.8, -length / 2 - 0.6),
                (pitch + roller_r, -length / 2),
            ]
        ),
        "Inner_Ring": ring(b.bore / 2, pitch - roller_r, -b.width / 2, b.width / 2),
    }
    count = max(8, int(2 * math.pi * pitch / (roller_r * 2 * 1.3)))
    cage = ring(pitch - roller_r * 0.25, pitch + roller_r * 0.25, -length / 2 - 0.5, length / 2 + 0.5)
    _assemble(
        add,
        rings,
        cylinder(roller_r, length),
        "Roller",
        on_circle(pitch, count),
        cage,
        cylinder(roller_r * 1.05, length + 0.2),
        POLYAMIDE,
    )


def _tapered_roller(b: Bearing, add) -> None:
    pitch = (b.bore + b.outer) / 4
    r_big, r_small = (b.outer - b.bore) * 0.13, (b.outer - b.bore) * 0.1
    length = b.width * 0.7
    rings = {  # raceways follow the rollers' flanks
        "Cup": revolved(
            [
                (pitch + r_big, -b.width / 2),
                (b.outer / 2, -b.width / 2),
                (b.outer / 2, b.width / 2),
                (pitch + r_small + (r_big - r_small) * 0.2, b.width / 2),
            ]
        ),
        "Cone": revolved(
            [
                (b.bore / 2, -b.width / 2),
                (pitch - r_big, -b.width / 2),
                (pitch - r_small, b.width / 2),
                (b.bore / 2, b.width / 2),
            ]
        ),
    }
    count = max(8, int(2 * math.pi * pitch / (r_big * 2 * 1.3)))
    roller = BRepPrimAPI_MakeCone(
        gp_Ax2(gp_Pnt(0, 0, -length / 2), gp.DZ_s()), r_big * 0.95, r_small * 0.95, length
    ).Shape()
    grow = gp_Trsf()
    grow.SetScale(gp_Pnt(0, 0, 0), 1.04)
    cage = ring(pitch - r_small * 0.2, pitch + r_small * 0.2, -length / 2, length / 2)
    _assemble(
        add,
        rings,
        roller,
        "Roller",
        on_circle(pitch, count),
        cage,
        BRepBuilderAPI_Transform(roller, grow, True).Shape(),
        BRASS,
    )


def _thrust_ball(b: Bearing, add) -> None:
    pitch = (b.bore + b.outer) / 4
    ball_r = (b.outer - b.bore) * 0.36 / 2
    washer = (b.width - 2 * ball_r * 0.8) / 2
    groove = torus(pitch, ball_r * 1.02)
    rings = {
        "Shaft_Washer": cut(ring(b.bore / 2, b.outer / 2 - 0.5, b.width / 2 - washer, b.width / 2), groove),
        "Housing_Washer": cut(ring(b.bore / 2 + 0.5, b.outer / 2, -b.width / 2, -b.width / 2 + washer), groove),
    }
    count = max(8, int(2 * math.pi * pitch / (ball_r * 2 * 1.3)))
    cage = ring(pitch - ball_r * 1.2, pitch + ball_r * 1.2, -ball_r * 0.2, ball_r * 0.2)
    _assemble(add, rings, sphere(ball_r), "Ball", on_circle(pitch, count), cage, sphere(ball_r * 1.05), POLYAMIDE)
