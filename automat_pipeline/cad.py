"""STEP → CAD metadata + viewer GLB + production GLB, in one pass over one OpenCascade XCAF document.

Reading and transferring the STEP costs most of a conversion, so everything comes from the same
document: the file is read, meshed and written once (the production GLB is the viewer GLB
with the library's materials). Names, colours and the assembly structure survive
because the reader fills an XCAF document, not a bare shape. ``convert_isolated`` runs the same
conversion in a child process with a wall-time and a memory limit: OpenCascade can hang, eat
memory or crash on bad geometry, and none of that may take the run worker down.

Failure classes: not_step, truncated, too_large, no_geometry, damaged_geometry, timeout,
out_of_memory. The schema a file declares decides nothing: OpenCascade translates the shape
entities of every schema that has them (AP203 editions 1 and 2, AP214, AP242, AP209 with
geometry), so a file converts if it holds shape geometry and is refused as no_geometry if not.
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from multiprocessing import forkserver
from pathlib import Path

import psutil
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

from automat_pipeline.errors import AutomatError, disk_full
from automat_pipeline.lifeline import die_with
from automat_pipeline.materials import Material, MaterialResolver
from automat_pipeline.tenant_settings import CadSettings

# Names some writers give every product; we fall back to the file name instead.
GENERIC_NAMES = re.compile(r"^(open[ _]cascade[ _]step[ _]translator.*|the product name|\(unsaved\)|)$", re.I)
MAX_STEP_BYTES = 512 * 1024 * 1024
# glibc's malloc settings for a conversion process (keep_freed_memory): parameter number, value
KEPT_FREED_MEMORY = {"TRIM_THRESHOLD": (-1, 1 << 30), "MMAP_THRESHOLD": (-3, 32 << 20)}
VIEWER_DEFAULT = Material("cad_default_grey", (0.6, 0.6, 0.6), 0.0, 0.5)


@dataclass
class Part:
    name: str
    color: str | None  # "#rrggbb" as the CAD file gave it
    bbox_mm: list[float]  # xmin, ymin, zmin, xmax, ymax, zmax
    volume_mm3: float
    area_mm2: float
    solids: int
    faces: int
    material: str | None = None
    material_source: str | None = None


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
    production_glb_bytes: int | None = None
    materials: list[str] = field(default_factory=list)  # [MATERIAL] decisions, one line per part
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def sniff_step(path: Path, name: str | None = None) -> str:
    """Reject what is not a complete STEP file before OpenCascade sees it; return its declared schema.

    OpenCascade reads some damaged files "successfully", so the cheap checks come first. The schema
    name is only reported: whether the file holds geometry is decided by reading it. ``name`` is
    the file's name in messages (the upload's, for a pinned copy).
    """
    size, name = path.stat().st_size, name or path.name
    if size == 0:
        raise AutomatError("not_step", f"{name} is empty (0 bytes)")
    if size > MAX_STEP_BYTES:
        raise AutomatError("too_large", f"{name} is {size} bytes, over the {MAX_STEP_BYTES} limit")
    with path.open("rb") as f:
        head = f.read(4096)
        f.seek(max(0, size - 256))
        tail = f.read()
    text = head.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf \t\r\n")
    if not text.upper().startswith("ISO-10303-21;"):
        raise AutomatError("not_step", f"{name} does not start with ISO-10303-21; (not a STEP file)")
    if "END-ISO-10303-21;" not in tail.decode("latin-1").upper():
        raise AutomatError("truncated", f"{name} has no END-ISO-10303-21; (the file is cut off)")
    match = re.search(r"FILE_SCHEMA\s*\(\s*\(\s*'([^']*)'", head.decode("latin-1"), re.I | re.S)
    return " ".join(match.group(1).split()) if match else ""


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
        glb_bytes = _write_production_glb(glb_path, glb_path, {d.part: resolver.library[d.material] for d in decisions})
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


def convert_isolated(
    step_path: Path,
    glb_path: Path,
    options: CadSettings | None = None,
    resolver: MaterialResolver | None = None,
    production_path: Path | None = None,
    timeout_seconds: float = 300,
    memory_mb: int = 4096,
    name: str | None = None,
) -> Conversion:
    """``convert_step`` in a child process, killed past ``timeout_seconds`` or ``memory_mb`` of RSS.

    A forkserver child: OpenCascade is imported once in the server, so each conversion costs a
    fork (about 25 ms, bench/run.py), not an interpreter start, and shares no thread or lock with
    the run worker. Memory is watched from outside: a hard allocation limit makes OpenCascade crash
    instead of failing cleanly, which would hide why it died.
    """
    context = start_isolation()
    receive, send = context.Pipe(duplex=False)
    name = name or Path(step_path).name
    args = (step_path, glb_path, options, resolver, production_path, name)
    child = context.Process(target=_child, args=(send, memory_mb, name, *args), daemon=True)
    child.start()
    send.close()
    deadline = time.monotonic() + timeout_seconds
    try:
        while not receive.poll(0.05):
            if time.monotonic() > deadline:
                raise AutomatError("timeout", f"{name}: conversion took over {timeout_seconds:g} s")
            try:
                rss = psutil.Process(child.pid).memory_info().rss
            except psutil.NoSuchProcess:  # it has exited: its answer, if it sent one, is in the pipe
                break
            if rss > memory_mb * 1024 * 1024:
                raise AutomatError("out_of_memory", f"{name}: conversion used over {memory_mb} MB")
        outcome, payload = receive.recv()
    except (EOFError, psutil.NoSuchProcess):  # died without a word: a native crash (a full disk, perhaps)
        child.join()
        crashed = AutomatError("damaged_geometry", f"{name}: OpenCascade crashed (exit {child.exitcode})")
        raise disk_full(glb_path) or crashed from None
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join()
    if outcome == "error":
        raise AutomatError(*payload)
    return payload


def start_isolation() -> multiprocessing.context.BaseContext:
    """The forkserver conversions run in, started if it is not yet: it imports OpenCascade (1-2 s),
    which a caller may let happen while it does other work before its first conversion."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["automat_pipeline.forkserver_lifeline", "automat_pipeline.cad"])
    forkserver.ensure_running()
    return context


def keep_freed_memory() -> None:
    """Have glibc keep the memory a conversion frees for its next allocations, instead of handing
    it back to the kernel (and faulting it in again, page by page): OpenCascade's meshing threads
    free and allocate without pause. Over the fixtures: a fifth fewer page faults, an eighth less
    meshing time, 2-3% off the total. For a process that converts and exits, as ``convert_isolated``'s
    child does."""
    libc = ctypes.CDLL(None)
    # The trim threshold keeps freed memory; setting it stops glibc raising its mmap threshold as it
    # goes (large blocks would be mapped and unmapped each time), so that is fixed where it would end.
    for parameter, value in KEPT_FREED_MEMORY.values():
        libc.mallopt(parameter, value)


def _child(send, memory_mb: int, name: str, *args) -> None:
    die_with(os.getppid())  # the forkserver, which dies with the run worker (forkserver_lifeline)
    keep_freed_memory()
    backstop = (memory_mb * 4 + 4096) * 1024 * 1024  # only against runaway growth between two looks
    resource.setrlimit(resource.RLIMIT_AS, (backstop, backstop))
    try:
        send.send(("ok", convert_step(*args)))
    except AutomatError as error:
        send.send(("error", (error.error_class, error.reason)))
    except MemoryError:
        send.send(("error", ("out_of_memory", f"{name}: ran out of memory while converting")))
    except Exception as error:  # OpenCascade raises Standard_Failure subclasses on bad geometry
        if isinstance(error, OSError) and (full := disk_full(args[1], error)):
            send.send(("error", (full.error_class, full.reason)))
            return
        send.send(("error", ("damaged_geometry", f"{name}: {type(error).__name__}: {error}".splitlines()[0])))
    finally:
        send.close()


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


def _write_production_glb(viewer: Path, path: Path, materials: dict[str, Material]) -> int:
    """The GLB OpenCascade wrote with each part's (node's) primitives on its library material, named
    after it. (Colours OpenCascade finds on the shapes would win over a material it is given.)

    Same buffer, nodes and transforms: only the materials change, so the production geometry is
    the viewer geometry by construction and OpenCascade writes the triangles once. A mesh shared
    by parts that resolve to different materials is split (its accessors stay shared).
    """
    document, binary = read_glb(viewer)
    used = {m.name: m for m in materials.values()}
    names = sorted(used)
    index = {name: i for i, name in enumerate(names)}
    document["materials"] = [_gltf_material(used[name]) for name in names]
    meshes, split = [], {}
    for node in document["nodes"]:
        if "mesh" not in node:
            continue
        key = (node["mesh"], index[materials[node["name"]].name])
        if key not in split:
            mesh = document["meshes"][key[0]]
            split[key] = len(meshes)
            meshes.append({**mesh, "primitives": [{**p, "material": key[1]} for p in mesh["primitives"]]})
        node["mesh"] = split[key]
    document["meshes"] = meshes
    write_glb(path, document, binary)
    return path.stat().st_size


def _gltf_material(material: Material) -> dict:
    """A glTF PBR material as OpenCascade writes one (``base_color`` is linear RGB)."""
    return {
        "name": material.name,
        "doubleSided": True,
        "pbrMetallicRoughness": {
            "baseColorFactor": [*material.base_color, 1.0],
            "metallicFactor": material.metallic,
            "roughnessFactor": material.roughness,
        },
    }


def read_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON document and the binary chunk of a .glb file."""
    data = Path(path).read_bytes()
    if data[:4] != b"glTF":
        raise AutomatError("not_glb", f"{Path(path).name} is not a binary glTF file")
    length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20 : 20 + length])
    rest = data[20 + length :]
    return document, rest[8 : 8 + struct.unpack_from("<I", rest, 0)[0]] if len(rest) >= 8 else b""


def write_glb(path: Path, document: dict, binary: bytes) -> None:
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text
    if binary:
        chunks += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    Path(path).write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)


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
