"""The conversion itself, in OpenCascade (OCP): one pass over one XCAF document.

Reading and transferring the STEP costs most of a conversion, so everything comes from the same
document: the file is read, meshed and written once (the production GLB is the viewer GLB
with the library's materials). Names, colours and the assembly structure survive
because the reader fills an XCAF document, not a bare shape. Imported where conversions run
(``cad.convert_isolated``'s forkserver and children, the bench, the tests), never by a run worker.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path

from OCP.Bnd import Bnd_Box
from OCP.BRep import BRep_Builder, BRep_Tool
from OCP.BRepBndLib import BRepBndLib
from OCP.BRepGProp import BRepGProp
from OCP.BRepMesh import BRepMesh_IncrementalMesh
from OCP.collections import (
    IndexedDataMap_TCollection_AsciiString_TCollection_AsciiString as FileInfo,
)
from OCP.collections import (
    Sequence_TCollection_AsciiString,
    Sequence_TDF_Label,
)
from OCP.GProp import GProp_GProps
from OCP.IFSelect import IFSelect_RetDone
from OCP.Message import Message_ProgressRange
from OCP.Quantity import Quantity_Color, Quantity_ColorRGBA, Quantity_TOC_RGB, Quantity_TOC_sRGB
from OCP.RWGltf import RWGltf_CafWriter
from OCP.RWMesh import RWMesh_CoordinateSystem_Zup
from OCP.STEPCAFControl import STEPCAFControl_Reader
from OCP.TCollection import TCollection_AsciiString, TCollection_ExtendedString, TCollection_HAsciiString
from OCP.TDataStd import TDataStd_Name
from OCP.TDF import TDF_Label
from OCP.TDocStd import TDocStd_Document
from OCP.TopAbs import TopAbs_FACE, TopAbs_SOLID
from OCP.TopExp import TopExp_Explorer
from OCP.TopLoc import TopLoc_Location
from OCP.TopoDS import TopoDS, TopoDS_Compound, TopoDS_Shape
from OCP.XCAFDoc import (
    XCAFDoc_ColorGen,
    XCAFDoc_ColorSurf,
    XCAFDoc_ColorTool,
    XCAFDoc_DocumentTool,
    XCAFDoc_ShapeTool,
    XCAFDoc_VisMaterial,
    XCAFDoc_VisMaterialPBR,
)

from automat_pipeline.cad import Conversion, Part, sniff_step, write_production_glb
from automat_pipeline.errors import AutomatError, disk_full
from automat_pipeline.materials import Material, MaterialResolver
from automat_pipeline.tenant_settings import CadSettings

# Names some writers give every product; we fall back to the file name instead.
GENERIC_NAMES = re.compile(r"^(open[ _]cascade[ _]step[ _]translator.*|the product name|\(unsaved\)|)$", re.I)
VIEWER_DEFAULT = Material("cad_default_grey", (0.6, 0.6, 0.6), 0.0, 0.5)


def convert_step(
    step_path: Path,
    glb_path: Path,
    options: CadSettings | None = None,
    resolver: MaterialResolver | None = None,
    production_path: Path | None = None,
    name: str | None = None,
) -> Conversion:
    """Read ``step_path``; write the viewer GLB (and, with a resolver, the production GLB).

    Both GLBs are binary glTF in metres, Y-up, with the same triangles. With a resolver the viewer
    GLB is the production GLB: each part on a glTF material named after and carrying the PBR values
    of its library material, so the web viewer shows the colours the renders show (the rule of
    the system Automat replaces: viewer colours come from the library, not the CAD file). Without
    one, the viewer GLB carries the CAD colours (as dielectrics: OpenCascade would write metallic
    = roughness = 1). ``name``
    is the upload's file name, for messages and as the fallback product name (default: the file's).
    """
    step_path, glb_path, options = Path(step_path), Path(glb_path), options or CadSettings()
    name, seconds = name or step_path.name, {}
    schema = sniff_step(step_path, name)

    t = time.perf_counter()
    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    XCAFDoc_DocumentTool.SetLengthUnit_s(doc, 0.001)  # the document works in mm
    reader = STEPCAFControl_Reader()
    reader.SetNameMode(True)
    reader.SetColorMode(True)
    reader.SetLayerMode(False)
    if reader.ReadFile(str(step_path)) != IFSelect_RetDone:
        raise AutomatError("damaged_geometry", f"OpenCascade could not parse {name}")
    seconds["read"] = time.perf_counter() - t

    t = time.perf_counter()
    roots_to_transfer = reader.NbRootsForTransfer()
    if not reader.Transfer(doc, Message_ProgressRange()):
        raise AutomatError("no_geometry", f"{name} (schema {schema or '(none)'}) holds no shapes to transfer")
    seconds["transfer"] = time.perf_counter() - t
    units = _file_units(reader)

    shape_tool = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    roots = Sequence_TDF_Label()
    shape_tool.GetFreeShapes(roots)
    whole = _compound([shape_tool.GetShape_s(roots.Value(i)) for i in range(1, roots.Length() + 1)])
    solids, faces = _count(whole, TopAbs_SOLID), _count(whole, TopAbs_FACE)
    if faces == 0:
        raise AutomatError(
            "no_geometry", f"{name} (schema {schema or '(none)'}) contains no surfaces (no B-rep geometry)"
        )
    rough = _bbox(whole, meshed=False)
    diagonal = math.dist(rough[:3], rough[3:])
    if not math.isfinite(diagonal) or diagonal <= 0:
        raise AutomatError("no_geometry", f"{name} has an empty or infinite bounding box")

    t = time.perf_counter()
    linear = min(options.max_deflection_mm, max(options.min_deflection_mm, options.relative_deflection * diagonal))
    BRepMesh_IncrementalMesh(whole, linear, False, options.angular_deflection, True)
    triangles, unmeshed = _triangles(whole)
    seconds["mesh"] = time.perf_counter() - t
    if unmeshed:
        raise AutomatError(
            "damaged_geometry",
            f"{name}: {unmeshed} of {faces} faces could not be meshed (their surfaces or trims are broken)",
        )
    bbox = _bbox(whole)
    if not all(map(math.isfinite, bbox)):
        raise AutomatError("damaged_geometry", f"{name}: the mesh has an infinite bounding box")

    t = time.perf_counter()
    labels = _leaf_parts(shape_tool, roots)
    stem = Path(name).stem
    parts = [_part(label, stem) for label in labels]
    for label, part in zip(labels, parts, strict=True):  # GLB node names are then exactly the part names
        TDataStd_Name.Set_s(label, TCollection_ExtendedString(part.name, True))  # UTF-8, not Latin-1
    product = _label_name(roots.Value(1)) if roots.Length() == 1 else ""
    product = stem if GENERIC_NAMES.match(product) else product
    warnings = []
    if roots.Length() < roots_to_transfer:
        warnings.append(
            f"{roots_to_transfer - roots.Length()} of {roots_to_transfer} root entities carried no "
            "geometry (PMI, annotations or presentation) and were skipped"
        )
    seconds["metadata"] = time.perf_counter() - t

    t = time.perf_counter()
    _apply_materials(doc, zip(labels, [_viewer_material(p.color) for p in parts], strict=True))
    glb_bytes = _write_glb(doc, glb_path)
    production_bytes, decisions = None, []
    if resolver is not None:
        decisions = [resolver.resolve(p.name) for p in parts]
        for part, decision in zip(parts, decisions, strict=True):
            part.material, part.material_source = decision.material, decision.source
        glb_bytes = write_production_glb(glb_path, glb_path, {d.part: resolver.library[d.material] for d in decisions})
        if production_path is not None:
            shutil.copyfile(glb_path, production_path)
            production_bytes = glb_bytes
    seconds["write"] = time.perf_counter() - t

    return Conversion(
        name=product,
        schema=schema,
        units=units,
        parts=parts,
        bbox_mm=bbox,
        solids=solids,
        faces=faces,
        triangles=triangles,
        glb_bytes=glb_bytes,
        production_glb_bytes=production_bytes,
        linear_deflection_mm=round(linear, 4),
        angular_deflection_rad=options.angular_deflection,
        materials=[d.log_line() for d in decisions],
        warnings=warnings,
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )


def _viewer_material(color: str | None) -> Material:
    if color is None:
        return VIEWER_DEFAULT
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    linear = Quantity_Color(r, g, b, Quantity_TOC_sRGB).Values(Quantity_TOC_RGB)
    return Material(f"cad_color_{color[1:]}", tuple(linear), 0.0, 0.5)


def _apply_materials(doc: TDocStd_Document, assignments) -> None:
    """Give every part label its material; one glTF material per distinct material name."""
    tool = XCAFDoc_DocumentTool.VisMaterialTool_s(doc.Main())
    created: dict[str, TDF_Label] = {}
    for label, material in assignments:
        if material.name not in created:
            vis, pbr = XCAFDoc_VisMaterial(), XCAFDoc_VisMaterialPBR()
            pbr.BaseColor = Quantity_ColorRGBA(Quantity_Color(*material.base_color, Quantity_TOC_RGB), 1.0)
            pbr.Metallic, pbr.Roughness, pbr.IsDefined = material.metallic, material.roughness, True
            vis.SetPbrMaterial(pbr)
            vis.SetRawName(TCollection_HAsciiString(material.name))
            created[material.name] = tool.AddMaterial(vis, TCollection_AsciiString(material.name))
        tool.SetShapeMaterial(label, created[material.name])


def _write_glb(doc: TDocStd_Document, path: Path) -> int:
    """Write binary glTF in metres, Y-up; OpenCascade names the materials mat_N."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = RWGltf_CafWriter(TCollection_AsciiString(str(path)), True)
    converter = writer.ChangeCoordinateSystemConverter()
    converter.SetInputLengthUnit(0.001)
    converter.SetInputCoordinateSystem(RWMesh_CoordinateSystem_Zup)
    writer.SetParallel(True)
    writer.SetMergeFaces(True)
    if not writer.Perform(doc, FileInfo(), Message_ProgressRange()):
        raise disk_full(path) or AutomatError("damaged_geometry", f"OpenCascade could not write {path.name}")
    return path.stat().st_size


def _file_units(reader: STEPCAFControl_Reader) -> str:
    lengths, angles, solid_angles = (Sequence_TCollection_AsciiString() for _ in range(3))
    reader.ChangeReader().FileUnits(lengths, angles, solid_angles)
    names = {lengths.Value(i).ToCString().lower() for i in range(1, lengths.Length() + 1)}
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
    low, high = box.CornerMin(), box.CornerMax()
    return [round(v, 4) for v in (low.X(), low.Y(), low.Z(), high.X(), high.Y(), high.Z())]


def _triangles(shape: TopoDS_Shape) -> tuple[int, int]:
    """Triangles over all faces, and how many faces got none."""
    explorer, triangles, unmeshed = TopExp_Explorer(shape, TopAbs_FACE), 0, 0
    while explorer.More():
        mesh = BRep_Tool.Triangulation_s(TopoDS.Face(explorer.Current()), TopLoc_Location())
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


def _leaf_parts(shape_tool: XCAFDoc_ShapeTool, roots: Sequence_TDF_Label) -> list[TDF_Label]:
    """Every part instance (component) under the roots, depth first; a root part stands for itself.

    A loop, not a recursion: a file may nest assemblies deeper than Python's recursion limit."""
    found: list[TDF_Label] = []
    stack = [roots.Value(i) for i in range(roots.Length(), 0, -1)]
    while stack:
        label = stack.pop()
        referred = TDF_Label()
        target = referred if XCAFDoc_ShapeTool.GetReferredShape_s(label, referred) else label
        if XCAFDoc_ShapeTool.IsAssembly_s(target):
            children = Sequence_TDF_Label()
            XCAFDoc_ShapeTool.GetComponents_s(target, children, False)
            stack += [children.Value(i) for i in range(children.Length(), 0, -1)]
        else:
            found.append(label)
    return found


def _part_name(label: TDF_Label, file_name: str) -> str:
    """The instance name, else the product name, else the file name (for writers' generic names)."""
    referred = TDF_Label()
    product = referred if XCAFDoc_ShapeTool.GetReferredShape_s(label, referred) else label
    name = _label_name(label) or _label_name(product)
    if GENERIC_NAMES.match(name) or re.fullmatch(r"=>\[[0-9:]+\]", name or ""):
        name = _label_name(product)
    return file_name if GENERIC_NAMES.match(name) else name


def _part(label: TDF_Label, file_name: str) -> Part:
    referred = TDF_Label()
    product = referred if XCAFDoc_ShapeTool.GetReferredShape_s(label, referred) else label
    shape = XCAFDoc_ShapeTool.GetShape_s(label)
    volume, area = GProp_GProps(), GProp_GProps()
    BRepGProp.VolumeProperties_s(shape, volume, False, False, True)  # from the mesh: exact enough, far cheaper
    BRepGProp.SurfaceProperties_s(shape, area, False, True)
    return Part(
        name=_part_name(label, file_name),
        color=_color(label, product),
        bbox_mm=_bbox(shape),
        volume_mm3=round(abs(volume.Mass()), 3),
        area_mm2=round(area.Mass(), 3),
        solids=_count(shape, TopAbs_SOLID),
        faces=_count(shape, TopAbs_FACE),
    )


def _color(instance: TDF_Label, product: TDF_Label) -> str | None:
    """The instance's colour, else the product's, else its first coloured sub-shape's: writers
    also colour single solids or faces, e.g. each piece of a cage that its pockets cut apart."""
    color, subshapes = Quantity_Color(), Sequence_TDF_Label()
    XCAFDoc_ShapeTool.GetSubShapes_s(product, subshapes)
    for label in (instance, product, *(subshapes.Value(i) for i in range(1, subshapes.Length() + 1))):
        for kind in (XCAFDoc_ColorSurf, XCAFDoc_ColorGen):
            if XCAFDoc_ColorTool.GetColor_s(label, kind, color):
                r, g, b = (round(c * 255) for c in color.Values(Quantity_TOC_sRGB))
                return f"#{r:02x}{g:02x}{b:02x}"
    return None
