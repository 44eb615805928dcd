"""STEP → CAD metadata + binary GLB, in one pass over one OpenCascade XCAF document.

Reading and transferring the STEP costs ~80% of a conversion, so metadata and GLB come from the
same document: the file is read once. Names, colours and the assembly structure survive because
the reader fills an XCAF document, not a bare shape.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from OCP.Bnd import Bnd_Box
from OCP.BRep import BRep_Tool
from OCP.BRepBndLib import BRepBndLib
from OCP.BRepGProp import BRepGProp
from OCP.BRepMesh import BRepMesh_IncrementalMesh
from OCP.GProp import GProp_GProps
from OCP.IFSelect import IFSelect_RetDone
from OCP.Message import Message_ProgressRange
from OCP.Quantity import Quantity_Color, Quantity_TOC_sRGB
from OCP.RWGltf import RWGltf_CafWriter
from OCP.RWMesh import RWMesh_CoordinateSystem_Zup
from OCP.STEPCAFControl import STEPCAFControl_Reader
from OCP.TCollection import TCollection_AsciiString, TCollection_ExtendedString
from OCP.TColStd import TColStd_IndexedDataMapOfStringString, TColStd_SequenceOfAsciiString
from OCP.TDataStd import TDataStd_Name
from OCP.TDF import TDF_Label, TDF_LabelSequence
from OCP.TDocStd import TDocStd_Document
from OCP.TopAbs import TopAbs_FACE, TopAbs_SOLID
from OCP.TopExp import TopExp_Explorer
from OCP.TopLoc import TopLoc_Location
from OCP.TopoDS import TopoDS, TopoDS_Compound, TopoDS_Shape
from OCP.BRep import BRep_Builder
from OCP.XCAFDoc import XCAFDoc_ColorGen, XCAFDoc_ColorTool, XCAFDoc_ColorSurf, XCAFDoc_DocumentTool, XCAFDoc_ShapeTool

from automat_pipeline.errors import InputError

SUPPORTED_SCHEMAS = ("CONFIG_CONTROL_DESIGN", "AUTOMOTIVE_DESIGN", "AP203", "AP214", "AP242")
# Names some writers give every product; we fall back to the file name instead.
GENERIC_NAMES = re.compile(r"^(open[ _]cascade[ _]step[ _]translator.*|the product name|)$", re.I)
MAX_STEP_BYTES = 512 * 1024 * 1024


@dataclass
class Part:
    name: str
    color: str | None  # "#rrggbb"
    bbox_mm: list[float]  # xmin, ymin, zmin, xmax, ymax, zmax
    volume_mm3: float
    area_mm2: float
    solids: int
    faces: int


@dataclass
class Conversion:
    """What one STEP → GLB conversion found and produced."""

    name: str
    schema: str
    units: str
    parts: list[Part]
    bbox_mm: list[float]
    solids: int
    faces: int
    triangles: int
    glb_bytes: int
    linear_deflection_mm: float
    angular_deflection_rad: float
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def sniff_step(path: Path) -> str:
    """Reject what is not a complete STEP file before OpenCascade sees it; return its schema.

    OpenCascade reads some damaged files "successfully", so the cheap checks come first.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError("empty_file", f"{path.name} is empty (0 bytes)")
    if size > MAX_STEP_BYTES:
        raise InputError("too_large", f"{path.name} is {size} bytes, over the {MAX_STEP_BYTES} limit")
    with path.open("rb") as f:
        head = f.read(4096)
        f.seek(max(0, size - 256))
        tail = f.read()
    text = head.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf \t\r\n")
    if not text.upper().startswith("ISO-10303-21;"):
        raise InputError("not_step", f"{path.name} does not start with ISO-10303-21; (not a STEP file)")
    if "END-ISO-10303-21;" not in tail.decode("latin-1").upper():
        raise InputError("truncated_step", f"{path.name} has no END-ISO-10303-21; (file is truncated)")
    match = re.search(r"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", head.decode("latin-1"), re.I | re.S)
    schema = match.group(1).strip() if match else ""
    if not any(s in schema.upper().replace(" ", "_") for s in SUPPORTED_SCHEMAS):
        raise InputError(
            "unsupported_schema",
            f"{path.name} declares schema {schema or '(none)'!r}; expected AP203, AP214 or AP242",
        )
    return schema


def convert_step(
    step_path: Path,
    glb_path: Path,
    relative_deflection: float = 0.001,
    angular_deflection: float = 0.5,
) -> Conversion:
    """Read ``step_path`` and write ``glb_path`` (binary glTF, metres, Y-up).

    The linear deflection is ``relative_deflection`` × the bounding-box diagonal, clamped to
    0.01–5 mm, so a washer and a housing both mesh to a sensible triangle count.
    """
    step_path, glb_path = Path(step_path), Path(glb_path)
    seconds: dict[str, float] = {}
    schema = sniff_step(step_path)

    t = time.perf_counter()
    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    XCAFDoc_DocumentTool.SetLengthUnit_s(doc, 0.001)  # the document works in mm
    reader = STEPCAFControl_Reader()
    reader.SetNameMode(True)
    reader.SetColorMode(True)
    reader.SetLayerMode(False)
    if reader.ReadFile(str(step_path)) != IFSelect_RetDone:
        raise InputError("step_read_failed", f"OpenCascade could not parse {step_path.name}")
    seconds["read"] = time.perf_counter() - t

    t = time.perf_counter()
    if not reader.Transfer(doc, Message_ProgressRange()):
        raise InputError("step_transfer_failed", f"{step_path.name} holds no transferable shapes")
    seconds["transfer"] = time.perf_counter() - t
    units = _file_units(reader)

    shape_tool = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    color_tool = XCAFDoc_DocumentTool.ColorTool_s(doc.Main())
    roots = TDF_LabelSequence()
    shape_tool.GetFreeShapes(roots)
    whole = _compound([shape_tool.GetShape_s(roots.Value(i)) for i in range(1, roots.Length() + 1)])
    solids, faces = _count(whole, TopAbs_SOLID), _count(whole, TopAbs_FACE)
    if faces == 0:
        raise InputError("no_geometry", f"{step_path.name} contains no surfaces (no B-rep geometry)")
    rough = _bbox(whole, meshed=False)
    diagonal = math.dist(rough[:3], rough[3:])
    if not math.isfinite(diagonal) or diagonal <= 0:
        raise InputError("no_geometry", f"{step_path.name} has an empty or infinite bounding box")

    t = time.perf_counter()
    linear = min(5.0, max(0.01, relative_deflection * diagonal))
    BRepMesh_IncrementalMesh(whole, linear, False, angular_deflection, True)
    triangles, unmeshed = _triangles(whole)
    seconds["mesh"] = time.perf_counter() - t
    bbox = _bbox(whole)
    warnings = [f"{unmeshed} of {faces} faces could not be meshed"] if unmeshed else []
    if triangles == 0:
        raise InputError("mesh_failed", f"{step_path.name}: no face of {faces} could be meshed")

    file_name = step_path.stem
    parts = [
        _part(shape_tool, color_tool, label, file_name)
        for label in _leaf_parts(shape_tool, roots)
    ]
    name = _label_name(roots.Value(1)) if roots.Length() == 1 else ""
    name = file_name if GENERIC_NAMES.match(name) else name

    t = time.perf_counter()
    glb_path.parent.mkdir(parents=True, exist_ok=True)
    writer = RWGltf_CafWriter(TCollection_AsciiString(str(glb_path)), True)
    converter = writer.ChangeCoordinateSystemConverter()
    converter.SetInputLengthUnit(0.001)
    converter.SetInputCoordinateSystem(RWMesh_CoordinateSystem_Zup)
    writer.SetParallel(True)
    if not writer.Perform(doc, TColStd_IndexedDataMapOfStringString(), Message_ProgressRange()):
        raise InputError("glb_write_failed", f"OpenCascade could not write {glb_path.name}")
    seconds["write"] = time.perf_counter() - t

    return Conversion(
        name=name,
        schema=schema,
        units=units,
        parts=parts,
        bbox_mm=bbox,
        solids=solids,
        faces=faces,
        triangles=triangles,
        glb_bytes=glb_path.stat().st_size,
        linear_deflection_mm=round(linear, 4),
        angular_deflection_rad=angular_deflection,
        warnings=warnings,
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )


def _file_units(reader: STEPCAFControl_Reader) -> str:
    lengths, angles, solid_angles = (TColStd_SequenceOfAsciiString() for _ in range(3))
    reader.ChangeReader().FileUnits(lengths, angles, solid_angles)
    names = {lengths.Value(i).ToCString() for i in range(1, lengths.Length() + 1)}
    return ",".join(sorted(names)) or "unknown"


def _compound(shapes: list[TopoDS_Shape]) -> TopoDS_Compound:
    compound = TopoDS_Compound()
    builder = BRep_Builder()
    builder.MakeCompound(compound)
    for shape in shapes:
        builder.Add(compound, shape)
    return compound


def _count(shape: TopoDS_Shape, kind) -> int:
    explorer, n = TopExp_Explorer(shape, kind), 0
    while explorer.More():
        n += 1
        explorer.Next()
    return n


def _bbox(shape: TopoDS_Shape, meshed: bool = True) -> list[float]:
    """Bounding box in mm: from the mesh nodes once meshed (tight, cheap), else from the geometry."""
    box = Bnd_Box()
    BRepBndLib.Add_s(shape, box, meshed)
    box.SetGap(0.0)
    if box.IsVoid():
        return [math.inf] * 3 + [-math.inf] * 3
    return [round(v, 4) for v in box.Get()]


def _triangles(shape: TopoDS_Shape) -> tuple[int, int]:
    """Triangles over all faces, and how many faces got none."""
    explorer, triangles, unmeshed = TopExp_Explorer(shape, TopAbs_FACE), 0, 0
    while explorer.More():
        mesh = BRep_Tool.Triangulation_s(TopoDS.Face_s(explorer.Current()), TopLoc_Location())
        if mesh is None or mesh.NbTriangles() == 0:
            unmeshed += 1
        else:
            triangles += mesh.NbTriangles()
        explorer.Next()
    return triangles, unmeshed


def _label_name(label: TDF_Label) -> str:
    attr = TDataStd_Name()
    if label.FindAttribute(TDataStd_Name.GetID_s(), attr):
        return attr.Get().ToExtString()
    return ""


def _leaf_parts(shape_tool: XCAFDoc_ShapeTool, roots: TDF_LabelSequence) -> list[TDF_Label]:
    """Every part instance (component) under the roots, depth first; a root part stands for itself."""
    found: list[TDF_Label] = []

    def visit(label: TDF_Label) -> None:
        referred = TDF_Label()
        target = referred if XCAFDoc_ShapeTool.GetReferredShape_s(label, referred) else label
        if XCAFDoc_ShapeTool.IsAssembly_s(target):
            children = TDF_LabelSequence()
            XCAFDoc_ShapeTool.GetComponents_s(target, children, False)
            for i in range(1, children.Length() + 1):
                visit(children.Value(i))
        else:
            found.append(label)

    for i in range(1, roots.Length() + 1):
        visit(roots.Value(i))
    return found


def _part(shape_tool, color_tool, label: TDF_Label, file_name: str) -> Part:
    referred = TDF_Label()
    product = referred if XCAFDoc_ShapeTool.GetReferredShape_s(label, referred) else label
    name = _label_name(label) or _label_name(product)
    if GENERIC_NAMES.match(name) or re.fullmatch(r"=>\[[0-9:]+\]", name or ""):
        name = _label_name(product)
    if GENERIC_NAMES.match(name):
        name = file_name
    shape = XCAFDoc_ShapeTool.GetShape_s(label)
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, props)
    volume = props.Mass()
    props = GProp_GProps()
    BRepGProp.SurfaceProperties_s(shape, props)
    return Part(
        name=name,
        color=_color(color_tool, label, product),
        bbox_mm=_bbox(shape),
        volume_mm3=round(abs(volume), 3),
        area_mm2=round(props.Mass(), 3),
        solids=_count(shape, TopAbs_SOLID),
        faces=_count(shape, TopAbs_FACE),
    )


def _color(color_tool, *labels: TDF_Label) -> str | None:
    color = Quantity_Color()
    for label in labels:
        for kind in (XCAFDoc_ColorSurf, XCAFDoc_ColorGen):
            if XCAFDoc_ColorTool.GetColor_s(label, kind, color):
                r, g, b = (round(c * 255) for c in color.Values(Quantity_TOC_sRGB))
                return f"#{r:02x}{g:02x}{b:02x}"
    return None
