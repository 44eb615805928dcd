"""STEP → CAD metadata + viewer GLB + production GLB, as the pipeline asks for it: the checks before
OpenCascade sees a file, the conversion in an isolated child process, and the GLB files.

``convert_isolated`` runs the conversion (``opencascade.convert_step``) in a child process with a
wall-time and a memory limit: OpenCascade can hang, eat memory or crash on bad geometry, and none of
that may take the run worker down. The children fork from a server that has imported OpenCascade;
the run worker itself never does (1.2 s of every run's start, bench/results/worker_imports.json).

Failure classes: not_step, truncated, too_large, no_geometry, damaged_geometry, timeout,
out_of_memory. The schema a file declares decides nothing: OpenCascade translates the shape
entities of every schema that has them (AP203 editions 1 and 2, AP214, AP242, AP209 with
geometry), so a file converts if it holds shape geometry and is refused as no_geometry if not.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import re
import resource
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from multiprocessing import forkserver
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from automat_pipeline.errors import AutomatError, disk_full
from automat_pipeline.lifeline import die_with
from automat_pipeline.materials import Material

if TYPE_CHECKING:
    from automat_pipeline.materials import MaterialResolver
    from automat_pipeline.tenant_settings import CadSettings

MAX_STEP_BYTES = 512 * 1024 * 1024
# glibc's malloc settings for a conversion process (keep_freed_memory): parameter number, value
KEPT_FREED_MEMORY = {"TRIM_THRESHOLD": (-1, 1 << 30), "MMAP_THRESHOLD": (-3, 32 << 20)}


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


def convert_isolated(
    step_path: Path,
    glb_path: Path,
    options: CadSettings | None = None,
    resolver: MaterialResolver | None = None,
    production_path: Path | None = None,
    timeout_seconds: float = 300,
    memory_mb: int = 4096,
    name: str | None = None,
    cancelled: threading.Event | None = None,
) -> Conversion:
    """``convert_step`` in a child process, killed past ``timeout_seconds`` or ``memory_mb`` of RSS,
    or once ``cancelled`` is set (its run was terminated while another thread waits here).

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
            if cancelled is not None and cancelled.is_set():
                raise AutomatError("cancelled", f"{name}: the run was terminated while it converted")
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
    context.set_forkserver_preload(["automat_pipeline.forkserver_lifeline", "automat_pipeline.opencascade"])
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
    from automat_pipeline.opencascade import convert_step  # preloaded by the forkserver: no cost here

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


def write_production_glb(viewer: Path, path: Path, materials: dict[str, Material]) -> int:
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
