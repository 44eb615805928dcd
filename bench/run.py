"""Benchmarks: prints a table per figure, writes ``bench/results/<name>.json`` and appends the
summary to ``bench/results/<name>-runs.jsonl``.

    .venv/bin/python bench/run.py [convert] [convert_batch] [worker_imports] [render] [look] [catalog] [api]
                                  [api_worker] [orders] [portal] [scale] [incremental] [daemon] [notify]
                                  [hostile [--slice]] [faults]
                                  (default: all)

- convert:   STEP→GLB seconds per fixture file (read, transfer, mesh, metadata, write, other), triangles,
             bytes, peak memory, and cascadio on the same file at the same deflection, as shipped and
             with our conversion child's malloc settings (goal: <= 0.9x)
- convert_batch: the same files as one media run converts them (every core), against cascadio one
             file after another (goal: <= 0.9x) and in a pool on the same cores, in turns
- worker_imports: what every run worker imports at its start (the definitions), as shipped and with
             OpenCascade as well (as before conversions left it to their forkserver), beside a bare
             interpreter start, in turns, each in a fresh process
- render:    still seconds per engine at 256, 1024 and 2048 px (one cold Blender process each), the
             studio look and the look before it in turns, a 36-frame turntable, and thumbnail
             throughput of one process per thumbnail (cold) against one process rendering the whole
             batch (warm)
- look:      the look tests' measurements: each library material in each engine against its
             bounds, and the reference images against fresh renders (tests/look.py)
- catalog:   a generated 100,000-row product list with material columns: container check, calamine
             and openpyxl read times, validation, upsert into PostgreSQL, report; then the re-import
             of the same file and of the file with one row changed (goal: <= 10 s; one row written)
- api:       the orders API seeded with 100,000 products and 1,000,000 media rows: media-browser
             and order-submission latency percentiles for 50 clients over loopback (goal: p95 <= 50 ms)
- portal:    the client portal in Debian's Chromium over loopback, cold each time: first contentful
             paint, the page's first render, and the products grid of 100 thumbnails decoded with its
             layout shift, beside a bare static page of the same 100 tiles and PNGs (goal: paint < 1 s,
             no layout shift); small screenshots of its pages into docs/portal/
- scale:     a 100,000-row catalogue into a new tenant of a database with statistics (import with
             partition registration, goal <= 30 s), the first sensor tick after it with 10,000 STEP
             files waiting (goal <= 10 s), the UI's partition health per asset page (goal < 1 s)
- incremental: a full run of 17 products, then one change at a time (same bytes again, a STEP file
             changed with its modification time set back, a rename, a material assignment, an
             alias): what each re-does against the full run
- daemon:    files dropped in the inbox → dagster-daemon (sensor, queue, run launcher as shipped) →
             every thumbnail on disk, against the bare work (the same conversions and thumbnails in
             one warm OpenCascade and one warm Blender process), in turns, for 17 and 100 products
             (goal <= 1.5x, and the marginal cost per product <= 1.2x the bare work's); levers with
             --label, --instance (dagster.yaml overrides) and --env
- notify:    a 1,000-line order's completion through the order_lines sensor to every channel (in-app,
             e-mail, webhooks) beside bare SQL and a bare sending loop; order submission under the api
             load with the deliverer sending and not, in alternating rounds (goal: p95 <= 50 ms)
- hostile:   the hostile corpus (bench/hostile_corpus.py, 200+ malformed inputs from the real fixtures)
             through the upload API and the inbox: server errors, crashed sensor ticks and steps,
             inputs without a recorded class and reason, reasons naming a Python exception, uploads
             lost (goal: 0, 0, 0, 0, 0)
- faults:    the fault-injection suite (tests/test_faults.py) on the whole stack: each fault, what must
             come of it, whether it did, data lost, and how long detection and recovery took; the
             README's Faults table (goal: all survived, 0 lost)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automat_pipeline.blender import blender_command, render_args, run_blender  # noqa: E402
from automat_pipeline.cad import KEPT_FREED_MEMORY, convert_isolated, keep_freed_memory  # noqa: E402
from automat_pipeline.errors import AutomatError  # noqa: E402
from automat_pipeline.opencascade import convert_step  # noqa: E402
from automat_pipeline.output_types import OutputType  # noqa: E402
from automat_pipeline.settings import Settings  # noqa: E402

FIXTURES = Settings().fixtures_dir / "step"
RESULTS = REPO / "bench" / "results"
REPEATS = 3
STAGES = ("read", "transfer", "mesh", "metadata", "write")  # Conversion.seconds


def save(name: str, rows: list[dict], summary: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "summary": summary,
        "rows": rows,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=1))
    with (RESULTS / f"{name}-runs.jsonl").open("a") as history:  # one line per run: this machine is noisy
        history.write(json.dumps({"when": document["when"], "summary": summary}) + "\n")
    print(f"-> {RESULTS / f'{name}.json'}, {RESULTS / f'{name}-runs.jsonl'}\n")


def table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def convert_one(tool: str, step: str, out: str, deflection: str) -> None:
    """Child-process body: one conversion by one tool, timed without the imports; prints JSON."""
    if tool == "cascadio":
        import cascadio

        started = time.perf_counter()
        cascadio.step_to_glb(step, out, tol_linear=float(deflection), tol_angular=0.5, tol_relative=False)
        print(json.dumps({"total": time.perf_counter() - started, "glb_bytes": Path(out).stat().st_size}))
        return
    from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver

    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES)
    keep_freed_memory()  # as convert_isolated's child does
    started = time.perf_counter()
    try:
        result = convert_step(Path(step), Path(out), resolver=resolver, production_path=Path(out + ".prod.glb"))
    except AutomatError as error:
        print(json.dumps({"error": error.error_class}))
        return
    print(
        json.dumps(
            {
                "total": time.perf_counter() - started,
                **result.seconds,
                "triangles": result.triangles,
                "parts": len(result.parts),
                "glb_bytes": result.glb_bytes,
                "deflection": result.linear_deflection_mm,
            }
        )
    )


def isolation_cost(out: str, *steps: str) -> None:
    """Child-process body: what ``convert_isolated`` adds to each conversion; prints JSON.

    The first isolated conversion also starts the forkserver (OpenCascade imported there), as the
    first conversion in each run worker does. After that, each file is converted in-process and
    isolated in turn; the difference is the fork, the child's start, the result's trip, the reap.
    """
    keep_freed_memory()  # as the isolated child does: the difference is isolation alone
    started = time.perf_counter()
    convert_isolated(Path(steps[0]), Path(out) / "first.glb")
    first = time.perf_counter() - started
    extra = []
    for step in steps:
        started = time.perf_counter()
        convert_step(Path(step), Path(out) / "direct.glb")
        direct = time.perf_counter() - started
        started = time.perf_counter()
        convert_isolated(Path(step), Path(out) / "isolated.glb")
        extra.append(time.perf_counter() - started - direct)
    extra.sort()
    print(
        json.dumps(
            {
                "first_isolated_seconds": round(first, 3),
                "isolation_ms_median": round(extra[len(extra) // 2] * 1000, 1),
                "isolation_ms_max": round(extra[-1] * 1000, 1),
            }
        )
    )


def best_of_each(step: Path, out: Path) -> tuple[dict, dict | None, dict | None]:
    """Ours, cascadio's and cascadio's with our conversion child's malloc settings (``KEPT``): the
    fastest of ``REPEATS`` fresh-process runs each, taken in turns (ours first, for the deflection)
    so that drift in this shared 2-core machine's speed hits all alike."""
    ours = [run_one("ours", step, out / f"{step.stem}.glb")]
    if "error" in ours[0]:
        return ours[0], None, None
    deflection = ours[0]["deflection"]
    theirs, theirs_kept = [], []
    while len(theirs) < REPEATS:
        theirs.append(run_one("cascadio", step, out / f"{step.stem}.cascadio.glb", deflection))
        theirs_kept.append(run_one("cascadio", step, out / f"{step.stem}.cascadio.glb", deflection, KEPT))
        if len(ours) < REPEATS:
            ours.append(run_one("ours", step, out / f"{step.stem}.glb"))
    return tuple(min(runs, key=lambda r: r["total"]) for runs in (ours, theirs, theirs_kept))


# keep_freed_memory's settings as glibc reads them from the environment at a process's start
KEPT = {f"MALLOC_{name}_": str(value) for name, (_, value) in KEPT_FREED_MEMORY.items()}


def run_one(tool: str, step: Path, out: Path, deflection: float = 0.0, env: dict | None = None) -> dict:
    """Run ``convert_one`` in a fresh process; add its peak resident memory."""
    process = subprocess.Popen(
        [sys.executable, __file__, "_one", tool, str(step), str(out), str(deflection)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    result = json.loads(output.strip().splitlines()[-1]) if output.strip() else {"error": f"exit {status}"}
    return {**result, "peak_mb": round(usage.ru_maxrss / 1024)}


SIZE_CLASSES = ((0, 100), (100, 500), (500, 10**9))  # KiB


def size_classes(rows: list[dict]) -> dict:
    """Ours and cascadio's seconds (as shipped and with our malloc settings), and the ratios, per
    file size class."""
    found = {}
    for low, high in SIZE_CLASSES:
        mine = [r for r in rows if low <= r["kib"] < high]
        ours, theirs, kept = (sum(r[k] for r in mine) for k in ("total", "cascadio", "cascadio_kept"))
        name = f"{low}-{high} KiB" if high < 10**9 else f"over {low} KiB"
        found[name] = {"files": len(mine), "seconds": round(ours, 3), "cascadio": round(theirs, 3)}
        found[name]["ratio"] = round(ours / theirs, 3) if theirs else None
        found[name]["cascadio_kept"] = round(kept, 3)
        found[name]["ratio_kept"] = round(ours / kept, 3) if kept else None
    return found


def bench_convert(out: Path) -> list[Path]:
    rows, glbs = [], []
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        ours, theirs, theirs_kept = best_of_each(path, out)
        if theirs is None:
            rows.append({"file": path.name, "error": ours["error"]})
            continue
        glbs.append(out / f"{path.stem}.glb")
        ours["other"] = ours["total"] - sum(ours[k] for k in STAGES)  # sniffing, checks, freeing the document
        rows.append(
            {
                "file": path.name,
                "kib": path.stat().st_size // 1024,
                **{k: round(ours[k], 3) for k in (*STAGES, "other", "total")},
                "cascadio": round(theirs["total"], 3),
                "ratio": round(ours["total"] / theirs["total"], 2),
                "cascadio_kept": round(theirs_kept["total"], 3),
                "parts": ours["parts"],
                "triangles": ours["triangles"],
                "glb_bytes": ours["glb_bytes"],
                "cascadio_bytes": theirs["glb_bytes"],
                "peak_mb": ours["peak_mb"],
                "cascadio_peak_mb": theirs["peak_mb"],
            }
        )
    ok = [r for r in rows if "total" in r]
    ours_total, theirs_total = sum(r["total"] for r in ok), sum(r["cascadio"] for r in ok)
    kept_total = sum(r["cascadio_kept"] for r in ok)
    smallest_first = sorted(
        (p for p in FIXTURES.rglob("*") if p.name in {r["file"] for r in ok}), key=lambda p: p.stat().st_size
    )
    # Started with -c, not as this script: Python 3.11 forkserver children re-run a main *script*
    # (not a -m module, as Dagster's run workers are), which would bill this file's imports.
    isolation = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); import run; run.isolation_cost(*sys.argv[2:])",
                str(Path(__file__).parent),
                str(out),
                *map(str, smallest_first),
            ],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    summary = {
        "files": len(rows),
        "converted": len(ok),
        "refused": len(rows) - len(ok),
        "total_seconds": round(ours_total, 3),
        "cascadio_seconds": round(theirs_total, 3),
        "ratio_to_cascadio": round(ours_total / theirs_total, 3),
        # cascadio in a process with our conversion child's malloc settings: what is ours, not glibc's
        "cascadio_kept_seconds": round(kept_total, 3),
        "ratio_to_cascadio_kept": round(ours_total / kept_total, 3),
        **{f"{k}_seconds": round(sum(r[k] for r in ok), 3) for k in (*STAGES, "other")},
        **json.loads(isolation),
        "by_size": size_classes(ok),
        # Transferring a file's independent products on several cores can only shorten files of
        # several parts: at most this share of the total on 2 cores (half their transfer).
        "parallel_transfer_bound": round(sum(r["transfer"] for r in ok if r["parts"] > 1) / 2 / ours_total, 3),
    }
    print(
        f"STEP -> viewer + production GLB per fixture file, against cascadio at the same linear deflection "
        f"(best of {REPEATS} fresh processes each, in turns)"
    )
    table(
        rows,
        [
            "file",
            "kib",
            *STAGES,
            "other",
            "total",
            "cascadio",
            "ratio",
            "cascadio_kept",
            "parts",
            "triangles",
            "glb_bytes",
            "cascadio_bytes",
            "peak_mb",
            "cascadio_peak_mb",
            "error",
        ],
    )
    print(summary)
    save("convert", rows, summary)
    return glbs


def batch_work(tool: str, at_once: str, out: str, deflections: str) -> None:
    """Child-process body: the convertible fixtures as one batch, ``at_once`` at a time, warm (imports
    done; for ours the forkserver started, as a run's step_file leaves it; cascadio's pool forked after
    its import), timed from the first conversion to the last; prints JSON. Ours is what a media run's
    cad_conversion step does (``convert_isolated`` in ``each_product``'s threads); cascadio converts
    at our deflection per file, in this process one after another (``at_once`` 1) or in a pool of
    ``at_once`` processes: the same cores for the same files, its best use."""
    from concurrent.futures import ThreadPoolExecutor

    files = [(Path(step), deflection) for step, deflection in json.loads(deflections)]
    at_once, folder = int(at_once), Path(out)
    if tool == "ours":
        from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver

        resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES)
        convert_isolated(files[0][0], folder / "warm.glb")

        def one(job: tuple[int, Path]):
            number, step = job
            glb = folder / f"{number}.glb"
            return convert_isolated(step, glb, resolver=resolver, production_path=glb.with_suffix(".prod.glb"))

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=at_once) as pool:
            triangles = sum(r.triangles for r in pool.map(one, enumerate(step for step, _ in files)))
        print(json.dumps({"seconds": time.perf_counter() - started, "triangles": triangles}))
        return
    import multiprocessing

    import cascadio  # noqa: F401  (warm: before the timing, and before the pool forks)

    jobs = [(str(step), str(folder / f"{n}.cascadio.glb"), deflection) for n, (step, deflection) in enumerate(files)]
    started = time.perf_counter()
    if at_once == 1:
        for job in jobs:
            _cascadio(*job)
    else:
        with multiprocessing.get_context("fork").Pool(at_once) as pool:
            pool.starmap(_cascadio, jobs, chunksize=1)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _cascadio(step: str, glb: str, deflection: float) -> None:
    import cascadio  # imported before the pool forks

    cascadio.step_to_glb(step, glb, tol_linear=deflection, tol_angular=0.5, tol_relative=False)


def bench_convert_batch(out: Path, rounds: int = 5) -> None:
    """The convertible fixtures as one media run converts them, on every core, against cascadio one file
    after another (the issue's figure, goal: <= 0.9x) and cascadio in a pool on the same cores (like
    for like), and ours one at a time: in turns, each in a fresh process, the order turned each round."""
    at_once = len(os.sched_getaffinity(0))
    fixtures = convertible_fixtures()
    with tempfile.TemporaryDirectory() as tmp:  # our deflection per file, which cascadio is given
        deflections = [(str(p), convert_isolated(p, Path(tmp) / "d.glb").linear_deflection_mm) for p in fixtures]
    variants = [("ours", at_once), ("cascadio", 1), ("cascadio", at_once), ("ours", 1)]
    rows = []
    for round_ in range(rounds):
        for tool, n in variants if round_ % 2 == 0 else variants[::-1]:
            with tempfile.TemporaryDirectory(dir=out) as where:
                done = subprocess.run(  # with -c, as bench_convert's isolation_cost: see there
                    [
                        sys.executable,
                        "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import run; run.batch_work(*sys.argv[2:])",
                        str(Path(__file__).parent),
                        tool,
                        str(n),
                        where,
                        json.dumps(deflections),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                    check=True,
                )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"round": round_, "tool": tool, "at_once": n, "load": os.getloadavg()[0], **result})
            print(f"round {round_} {tool:8s} {n} at once {result['seconds']:7.3f} s", flush=True)

    def median(tool: str, n: int) -> float:
        values = sorted(r["seconds"] for r in rows if r["tool"] == tool and r["at_once"] == n)
        return values[len(values) // 2]

    ours, serial = median("ours", at_once), median("ours", 1)
    loop, pool = median("cascadio", 1), median("cascadio", at_once)
    summary = {
        "files": len(fixtures),
        "cores": at_once,
        "rounds": rounds,
        "ours_seconds": round(ours, 3),
        "ours_one_at_a_time_seconds": round(serial, 3),
        "cascadio_one_after_another_seconds": round(loop, 3),
        "cascadio_pool_seconds": round(pool, 3),
        "ratio_to_cascadio": round(ours / loop, 3),
        "ratio_to_cascadio_pool": round(ours / pool, 3),
        "ratio_one_at_a_time_to_cascadio": round(serial / loop, 3),
        "triangles": sorted({r["triangles"] for r in rows if "triangles" in r}),
    }
    print(summary)
    save("convert_batch", rows, summary)


WORKER_IMPORTS = {
    "bare": "pass",
    "definitions": "import automat_pipeline.definitions",
    "definitions_and_opencascade": "import automat_pipeline.definitions, automat_pipeline.opencascade",
}


def bench_worker_imports(rounds: int = 10) -> None:
    """A run worker's imports at its start, as shipped ("definitions") and with OpenCascade too, as
    every worker paid before the conversion moved to ``opencascade.py``; beside a bare interpreter
    start. Each a fresh process, in turns, the order turned each round."""
    rows = []
    for round_ in range(rounds):
        for what, code in WORKER_IMPORTS.items() if round_ % 2 == 0 else reversed(WORKER_IMPORTS.items()):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
            seconds = time.perf_counter() - started
            rows.append({"round": round_, "what": what, "seconds": seconds, "load": os.getloadavg()[0]})

    def median(what: str) -> float:
        values = sorted(r["seconds"] for r in rows if r["what"] == what)
        return values[len(values) // 2]

    bare, shipped, before = (median(what) for what in WORKER_IMPORTS)
    summary = {
        "rounds": rounds,
        "bare_seconds": round(bare, 3),
        "definitions_seconds": round(shipped, 3),
        "definitions_and_opencascade_seconds": round(before, 3),
        "opencascade_seconds_saved": round(before - shipped, 3),
        "ratio_to_before": round(shipped / before, 3),
        "ratio_to_bare": round(shipped / bare, 3),
    }
    print(summary)
    save("worker_imports", rows, summary)


ENGINES = ("workbench", "eevee", "cycles")
MODEL = REPO / "bench" / "models" / "as1.glb"  # the as1 assembly's production GLB (shipped library); gpu_bench.sh's too
SIZES = ((256, 16), (1024, 32), (2048, 32))  # px, samples (Cycles and EEVEE)


def shipped_library(out: Path) -> Path:
    from automat_pipeline.materials import FALLBACK, LIBRARY, for_blender

    path = out / "library.json"
    path.write_text(json.dumps(for_blender({m.name: m for m in LIBRARY}, FALLBACK)))
    return path


def old_look(out: Path) -> Path:
    """``blender/`` as it was before the studio look (the parent of the commit that brought in
    studio.exr), so both looks are measured in the same run, in turns."""
    git = ["git", "-C", str(REPO)]
    studio = subprocess.run(
        [*git, "log", "-1", "--format=%H", "-S", 'HDRI = "studio.exr"', "--", "blender/automat_blender/scene.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (out / "old-look").mkdir(exist_ok=True)
    archive = subprocess.run([*git, "archive", f"{studio}^", "blender"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out / "old-look")], input=archive, check=True)
    return out / "old-look" / "blender"


def _render(glb: Path, output: Path, kind: OutputType, library: Path, scripts: Path = REPO / "blender"):
    command = blender_command(
        str(REPO / ".venv-render" / "bin" / "python"), str(scripts), render_args(glb, output, kind, library)
    )
    started = time.perf_counter()
    [result] = run_blender(command, timeout=3600)
    return round(time.perf_counter() - started, 3), result


def production_glbs(out: Path) -> list[Path]:
    """Every convertible fixture as the CAD stage leaves it: the production GLB (shipped library)."""
    from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver

    resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES)
    glbs = []
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        try:
            convert_step(path, out / "viewer.glb", resolver=resolver, production_path=out / f"{path.stem}.glb")
            glbs.append(out / f"{path.stem}.glb")
        except AutomatError:
            continue
    return glbs


def bench_render(out: Path) -> None:
    """Seconds per engine and size, the studio look against the old one in turns (one cold Blender
    process each), a turntable, and cold against warm (one Blender process for a batch) thumbnail
    throughput."""
    library, old = shipped_library(out), old_look(out)
    rows = []
    warm_up = OutputType(name="t", kind="thumbnail", engine="eevee")
    _render(MODEL, out / "warm-up.png", warm_up, library)  # EEVEE's shader cache
    for engine in ENGINES:
        for size, samples in SIZES:
            kind = OutputType(name="s", kind="still", engine=engine, resolution=size, samples=samples)
            for look, scripts in (("old", old), ("studio", REPO / "blender")):
                wall, result = _render(MODEL, out / f"{look}-{engine}-{size}.png", kind, library, scripts)
                rows.append(
                    {
                        "look": look,
                        "what": f"still {size}px",
                        "engine": engine,
                        "samples": result["samples"],
                        "wall": wall,
                        "in_blender": result["render_seconds"],
                        "device": result["device"],
                    }
                )
    turntable = OutputType(name="t", kind="turntable", resolution=512, transparent=False, frames=36)
    wall, result = _render(MODEL, out / "turntable.mp4", turntable, library)
    rows.append(
        {
            "look": "studio",
            "what": "turntable 512px 36 frames",
            "engine": "cycles",
            "samples": 16,
            "wall": wall,
            "in_blender": result["render_seconds"],
            "device": result["device"],
        }
    )
    print(f"Renders of {MODEL.name} ({result['meshes']} meshes), CPU only, the old look and the studio look in turns")
    table(rows, ["look", "what", "engine", "samples", "wall", "in_blender", "device"])

    glbs = production_glbs(out)
    batch = []
    for engine in ("workbench", "cycles"):
        kind = OutputType(name="thumbnail", kind="thumbnail", engine=engine)
        cold_started = time.perf_counter()
        for glb in glbs:
            _render(glb, out / f"cold-{engine}-{glb.stem}.png", kind, library)
        cold = time.perf_counter() - cold_started
        jobs = out / f"jobs-{engine}.json"
        jobs.write_text(
            json.dumps([render_args(glb, out / f"warm-{engine}-{glb.stem}.png", kind, library) for glb in glbs])
        )
        warm_started = time.perf_counter()
        results = run_blender(
            blender_command(
                str(REPO / ".venv-render" / "bin" / "python"), str(REPO / "blender"), ["--batch", str(jobs)]
            ),
            timeout=3600,
        )
        warm = time.perf_counter() - warm_started
        assert len(results) == len(glbs) and not any("error" in r for r in results), results
        batch.append(
            {
                "engine": engine,
                "thumbnails": len(glbs),
                "cold_seconds": round(cold, 2),
                "warm_seconds": round(warm, 2),
                "cold_per_minute": round(60 * len(glbs) / cold, 1),
                "warm_per_minute": round(60 * len(glbs) / warm, 1),
                "warm_speedup": round(cold / warm, 2),
            }
        )
    print("Thumbnail 256 px throughput (studio look): one Blender process per thumbnail (cold) against one for all")
    table(
        batch,
        ["engine", "thumbnails", "cold_seconds", "warm_seconds", "cold_per_minute", "warm_per_minute", "warm_speedup"],
    )
    ratios = {
        f"{r['engine']} {r['what']}": round(r["in_blender"] / o["in_blender"], 2)
        for r, o in zip(rows[1::2], rows[0::2], strict=False)
        if r["look"] == "studio" and o["look"] == "old" and r["what"] == o["what"]
    }
    save("render", rows, {"studio_over_old_seconds": ratios, "warm_batch": batch})


def bench_look(out: Path) -> None:
    """The look tests' measurements (tests/look.py): every shipped library material in every engine,
    through ``automat render thumbnail --tenant`` on a fresh local stack, against its bounds; and
    each reference image against a fresh render."""
    sys.path.insert(0, str(REPO / "tests"))
    from look import ENGINES as LOOK_ENGINES
    from look import LOOKS, REFERENCES, compare, material_glbs, render_references, render_thumbnail, stats

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    env["AUTOMAT_HOME"] = str(out / "look-home")
    subprocess.run([sys.executable, "-m", "automat_pipeline.cli", "tenant", "create", "look"], env=env, check=True)
    (out / "look").mkdir(exist_ok=True)
    glbs = material_glbs(out / "look")
    rows = []
    for engine in LOOK_ENGINES:
        for material, looks in LOOKS.items():
            png = out / "look" / f"{engine}-{material}.png"
            render_thumbnail(glbs[material], png, engine, "look", env)
            measured = stats(png)
            problems = looks.problems(measured)
            rows.append({"engine": engine, "material": material, **measured, "passed": not problems})
    print("The look: each library material's fully covered pixels (luminance 0-255), 128 px thumbnails")
    table(rows, ["engine", "material", "mean", "p10", "p90", "dark", "rgb", "covered", "passed"])
    (out / "references").mkdir(exist_ok=True)
    references = {
        case: compare(REFERENCES / f"{case}.png", png, out / f"{case}-diff.png")
        for case, png in render_references(out / "references").items()
    }
    table([{"case": c, **r} for c, r in references.items()], ["case", "ssim", "delta_e", "passed"])
    bounds = {m: vars(looks) for m, looks in LOOKS.items()}
    save("look", rows, {"bounds": bounds, "references": references, "all_passed": all(r["passed"] for r in rows)})


def write_product_list(path: Path, rows: int, changed_row: int | None = None) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Produkte")
    sheet.append(["Produktliste 2026"])
    sheet.append(
        [
            "PIM-ID",
            "Bezeichnung",
            "Kategorie",
            "Lagertyp",
            "STEP-Datei",
            "Material: Outer_Ring",
            "Material: Cage",
            "Gewicht kg",
            "Freigabe",
        ]
    )
    for i in range(rows):
        name = f"Rillenkugellager 6{i % 400:03d} Variante {i}" + (" (geändert)" if i == changed_row else "")
        sheet.append(
            [
                f"P-{i:06d}",
                name,
                ["ball", "roller", "thrust"][i % 3],
                "Rillenkugellager",
                f"P-{i:06d}.step",
                "SCHAEFFLER_010101_Steel-Bare",
                "SCHAEFFLER_020202_Brass-Cage",
                round(0.05 + i % 97 / 100, 3),
                datetime(2026, 1 + i % 12, 1 + i % 28),
            ]
        )
    workbook.save(path)


def bench_catalog(out: Path, rows: int = 100_000) -> None:
    from openpyxl import load_workbook
    from python_calamine import CalamineWorkbook

    from automat_pipeline.catalog import check_container, read_catalog
    from automat_pipeline.catalog_import import attach_report, import_workbook
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import migrate, session
    from automat_pipeline.db.models import CatalogImport
    from automat_pipeline.embedded import database_url, start_server
    from automat_pipeline.tenant_settings import CatalogSettings

    path, changed = out / "products.xlsx", out / "products-changed.xlsx"
    started = time.perf_counter()
    write_product_list(path, rows)
    write_product_list(changed, rows, changed_row=rows // 2)
    generate = time.perf_counter() - started
    timings: dict[str, float] = {}

    def timed(name, fn):
        started = time.perf_counter()
        value = fn()
        timings[name] = round(time.perf_counter() - started, 3)
        return value

    timed("container_check", lambda: check_container(path, CatalogSettings().max_uncompressed_bytes))
    timed("calamine_read", lambda: CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Produkte").to_python())
    timed(
        "openpyxl_read",
        lambda: sum(1 for _ in load_workbook(path, read_only=True)["Produkte"].iter_rows(values_only=True)),
    )
    check = timed("read_and_validate", lambda: read_catalog(path))
    timings["validate"] = round(timings["read_and_validate"] - timings["calamine_read"] - timings["container_check"], 3)

    server, admin_url = start_server(out / "pg", cleanup_mode="delete")  # noqa: F841 - keeps it up
    url = database_url(admin_url, "bench")
    migrate(url)

    def run_import(workbook: Path, label: str) -> dict:
        started = time.perf_counter()
        with session(url) as s, s.begin():
            result = import_workbook(s, repository.tenant(s, "bench"), workbook, "bench")
        return {
            "import": label,
            "end_to_end": round(time.perf_counter() - started, 3),
            **result.seconds,
            "import_id": result.import_id,
            **{k: result.counts[k] for k in ("accepted", "rejected", "created", "updated", "unchanged")},
        }

    runs = [run_import(path, "first"), run_import(path, "same file again")]
    with session(url) as s, s.begin():
        timed(
            "report_openpyxl",
            lambda: attach_report(s, s.get(CatalogImport, runs[0]["import_id"]), path, out / "reports"),
        )
    changed.replace(path)  # the same workbook, uploaded again with one row edited
    runs.append(run_import(path, "one row changed"))
    summary = {
        "rows": rows,
        "generate_seconds": round(generate, 2),
        **timings,
        "first_import_seconds": runs[0]["end_to_end"],
        "reimport_same_seconds": runs[1]["end_to_end"],
        "one_row_change_seconds": runs[2]["end_to_end"],
        "one_row_change_rows_written": runs[2]["updated"] + runs[2]["created"],
        "accepted": len(check.accepted),
    }
    print(f"Catalogue import, {rows} rows with material columns")
    print(timings)
    table(runs, ["import", "end_to_end", "read", "write", "accepted", "created", "updated", "unchanged"])
    print(summary)
    save("catalog", runs, summary)


SEED = """
INSERT INTO tenants (slug, name, settings) VALUES ('acme', 'ACME', '{}'), ('beta', 'Beta', '{}');
INSERT INTO products (tenant_id, pim_id, key, name, category_key, lagertyp, materials, attributes, active)
SELECT 1 + (n % 10 = 0)::int, 'P-' || n, 'P-' || n, 'Bearing ' || n || ' ' || md5(n::text),
       'cat-' || (n % 40), 'typ-' || (n % 12), '{}', '{}', true FROM generate_series(1, :products) n;
INSERT INTO product_files (tenant_id, product_id, filename, kind, sha256, size_bytes, status)
SELECT tenant_id, id, key || '.stp', 'step', md5(key), 1000, 'ok' FROM products;
INSERT INTO media_assets (tenant_id, product_id, asset, output_type, status, path, details, updated_at)
SELECT p.tenant_id, p.id, (ARRAY['thumbnail', 'still', 'turntable', 'blend_export'])[1 + n % 4],
       'type-' || (n / :products),
       (ARRAY['completed', 'completed', 'completed', 'failed', 'cancelled'])[1 + n % 5], '/media/x.png', '{}',
       now() - make_interval(secs => n)
FROM generate_series(0, :media - 1) n JOIN products p ON p.id = 1 + n % :products;
ANALYZE;
"""


API_QUERIES = {
    "newest": {},
    "asset": {"asset": "still"},
    "status": {"status": "failed"},
    "category": {"category_key": "cat-7"},
    "lagertyp+asset": {"lagertyp": "typ-3", "asset": "turntable"},
    "search": {"q": "Bearing 4242"},
}


def api_clients(
    port: int, token: str, numbers: list[int], products: int, seconds: float, think: float, lockstep: bool
) -> dict[str, list[float]]:
    """Clients ``numbers``, one thread and keep-alive connection each (stdlib http.client: a cheap
    load generator), browsing media and now and then submitting an order; their latencies by request.

    Each client waits an exponentially distributed think time (mean ``think``) after each page and
    starts at a random moment within the first ``think`` seconds, as independent users do.
    ``lockstep``: every client starts at once and thinks exactly ``think``; the clients then fire
    in bursts of all of them, which no real audience does (kept to compare)."""
    import http.client
    import random
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: dict[str, list[float]] = {name: [] for name in [*API_QUERIES, "page 2", "submit order"]}

    def client(number: int) -> None:
        rng = random.Random(number)
        pause = (lambda: think) if lockstep else (lambda: rng.expovariate(1 / think))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict, float]:
            began = time.perf_counter()
            try:
                connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError):  # closed while idle (keep-alive timeout)
                connection.close()  # reconnects on the next request, as a browser would; counted in the latency
                connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
                response = connection.getresponse()
            data = json.loads(response.read() or b"null")
            return response.status, data, time.perf_counter() - began

        deadline, i = time.perf_counter() + seconds, number
        if not lockstep:
            time.sleep(rng.uniform(0, think))
        while time.perf_counter() < deadline:
            i += 1
            name = list(API_QUERIES)[i % len(API_QUERIES)]
            _, page, took = call("GET", "/media?" + urllib.parse.urlencode(API_QUERIES[name]))
            latencies[name].append(took)
            if page.get("next_cursor") and i % 3 == 0:
                params = urllib.parse.urlencode({**API_QUERIES[name], "cursor": page["next_cursor"]})
                latencies["page 2"].append(call("GET", "/media?" + params)[2])
            if i % 10 == 0:
                order = call("POST", "/orders")[1]["id"]
                call(
                    "POST",
                    f"/orders/{order}/lines",
                    {"product_id": 1 + (i * 7919) % products, "output_type": "still-web"},
                )
                status, body, took = call("POST", f"/orders/{order}/submit")
                assert status == 200, body
                latencies["submit order"].append(took)
            time.sleep(pause())

    with ThreadPoolExecutor(len(numbers)) as pool:
        list(pool.map(client, numbers))
    return latencies


def bench_api(
    out: Path,
    products: int = 100_000,
    media: int = 1_000_000,
    clients: int = 50,
    seconds: float = 30.0,
    think: float = 1.0,
    client_processes: int = 5,
) -> None:
    """The orders API over loopback: 100k products and 1M media rows, 50 clients browsing with a
    think time, and order submissions (Dagster unreachable: the launch fails fast, lines stay pending).
    The clients run in ``client_processes`` processes, so their own GIL does not add to the latencies
    they measure; independent clients first, then the same clients in lockstep."""
    import socket
    from concurrent.futures import ProcessPoolExecutor

    import httpx
    from sqlalchemy import text

    from automat_pipeline.api.security import hash_password
    from automat_pipeline.db.database import engine
    from automat_pipeline.embedded import prepare

    load_at_start = os.getloadavg()  # the others' load: the seed below adds its own
    home = out / "api-home"
    for key in [k for k in os.environ if k.startswith("AUTOMAT_")]:
        del os.environ[key]
    prepare(Settings(home=home))  # the embedded PostgreSQL stops when this process exits
    started = time.perf_counter()
    with engine(os.environ["AUTOMAT_DATABASE_URL"]).begin() as conn:
        for statement in SEED.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), {"products": products, "media": media})
        conn.execute(
            text(
                "INSERT INTO users (tenant_id, email, email_normalized, password_hash, role) VALUES "
                "(1, 'pm@acme.example', 'pm@acme.example', :h, 'project_manager')"
            ),
            {"h": hash_password("bench password")},
        )
    seed_seconds = time.perf_counter() - started
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "automat"), "api", "--port", str(port)],
        env={**os.environ, "AUTOMAT_DAGSTER_GRAPHQL_URL": "http://127.0.0.1:9/graphql"},
    )
    base = f"http://127.0.0.1:{port}"

    runs, loads = {}, {}
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        token = httpx.post(
            f"{base}/auth/login", json={"email": "pm@acme.example", "password": "bench password"}
        ).json()["access_token"]
        for arrivals, lockstep in (("independent", False), ("lockstep", True)):
            latencies: dict[str, list[float]] = {}
            before = os.getloadavg()
            with ProcessPoolExecutor(client_processes) as pool:
                shares = [list(range(clients))[k::client_processes] for k in range(client_processes)]
                arguments = [(port, token, share, products, seconds, think, lockstep) for share in shares]
                for part in pool.map(api_clients, *zip(*arguments, strict=True)):
                    for name, values in part.items():
                        latencies.setdefault(name, []).extend(values)
            runs[arrivals], loads[arrivals] = latencies, (before, os.getloadavg())
    finally:
        api.terminate()
        api.wait(timeout=30)

    rows, summary = (
        [],
        {
            "products": products,
            "media_rows": media,
            "clients": clients,
            "think_seconds": think,
            "client_processes": client_processes,
            "seconds": seconds,
            "seed_seconds": round(seed_seconds, 1),
            "load_average_at_start": [round(x, 2) for x in load_at_start],
        },
    )
    for arrivals, latencies in runs.items():
        rows += [
            {
                "arrivals": arrivals,
                "request": name,
                "count": len(v),
                "p50_ms": percentile(v, 0.5),
                "p95_ms": percentile(v, 0.95),
                "p99_ms": percentile(v, 0.99),
            }
            for name, v in latencies.items()
            if v
        ]
        browse = [x for name, v in latencies.items() if name != "submit order" for x in v]
        summary[arrivals] = {
            "requests_per_second": round(sum(len(v) for v in latencies.values()) / seconds, 1),
            "media_browser_p50_ms": percentile(browse, 0.5),
            "media_browser_p95_ms": percentile(browse, 0.95),
            "media_browser_p99_ms": percentile(browse, 0.99),
            "submit_order_p50_ms": percentile(latencies["submit order"], 0.5),
            "submit_order_p95_ms": percentile(latencies["submit order"], 0.95),
            "load_average_before": [round(x, 2) for x in loads[arrivals][0]],
            "load_average_after": [round(x, 2) for x in loads[arrivals][1]],
        }
    print(f"Orders API, {clients} clients ({think} s mean think time) for {seconds:g} s each way, over loopback")
    table(rows, ["arrivals", "request", "count", "p50_ms", "p95_ms", "p99_ms"])
    print(summary)
    save("api", rows, summary)


ORDERS_SEED = """
INSERT INTO tenants (slug, name, settings) VALUES ('acme', 'ACME', '{}');
INSERT INTO products (tenant_id, pim_id, key, name, materials, attributes, active)
SELECT 1, 'P-' || n, 'P-' || n, 'Bearing ' || n, '{}', '{}', true FROM generate_series(1, :lines_per_order) n;
INSERT INTO users (tenant_id, email, email_normalized, password_hash, role)
SELECT 1, 'client' || n || '@acme.example', 'client' || n || '@acme.example', 'x', 'client'
FROM generate_series(1, 20) n;
INSERT INTO orders (tenant_id, number, created_by, status, submitted_at, created_at)
SELECT 1, 'ORD-2026-' || lpad(n::text, 6, '0'), 1 + n % 20,
       (ARRAY['submitted', 'submitted', 'submitted', 'draft', 'cancelled', 'rejected'])[1 + n % 6],
       now() - make_interval(mins => n), now() - make_interval(mins => n)
FROM generate_series(1, :orders) n;
INSERT INTO order_lines (tenant_id, order_id, product_id, output_type, state, run_id, seconds, ended_at, outputs)
SELECT 1, o.id, p.n, 'still-web',
       (ARRAY['completed', 'completed', 'completed', 'completed', 'failed', 'cancelled', 'running', 'queued'])
           [1 + (o.id + p.n) % 8],
       md5(o.id::text || p.n::text), 1 + (o.id + p.n) % 60, now() - make_interval(mins => o.id), '[]'
FROM orders o CROSS JOIN generate_series(1, :lines_per_order) p(n);
"""
BARE_BOARD = """
SELECT o.id, o.number, o.status, o.workflow, o.created_by, o.created_at, o.submitted_at,
       (SELECT jsonb_object_agg(s.state, s.n) FROM (SELECT state, count(*) AS n FROM order_lines l
        WHERE l.order_id = o.id AND l.tenant_id = 1 GROUP BY state) s)
FROM orders o WHERE o.tenant_id = 1 ORDER BY o.id DESC LIMIT 51"""
BOARD_QUERIES = {
    "board newest": {},
    "board submitted": {"status": "submitted"},
    "board drafts+rejected": {"status": ["draft", "rejected"]},
    "board by creator": {"created_by": 7},
    "board by number": {"number": "ORD-2026-004242"},
}


def order_clients(port: int, token: str, numbers: list[int], orders: int, seconds: float, think: float):
    """Clients ``numbers`` browsing the order board and opening job documents, with think times as
    independent users; their latencies by request (see api_clients)."""
    import http.client
    import random
    import urllib.parse
    from concurrent.futures import ThreadPoolExecutor

    headers = {"Authorization": f"Bearer {token}"}
    latencies: dict[str, list[float]] = {name: [] for name in [*BOARD_QUERIES, "board page 2", "job document"]}

    def client(number: int) -> None:
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call(path: str) -> tuple[dict, float]:
            began = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError):
                connection.close()
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
            return body, time.perf_counter() - began

        deadline, i = time.perf_counter() + seconds, number
        time.sleep(rng.uniform(0, think))
        while time.perf_counter() < deadline:
            i += 1
            name = list(BOARD_QUERIES)[i % len(BOARD_QUERIES)]
            board, took = call("/orders?" + urllib.parse.urlencode(BOARD_QUERIES[name], doseq=True))
            latencies[name].append(took)
            if board["next_cursor"] and i % 3 == 0:
                params = urllib.parse.urlencode({**BOARD_QUERIES[name], "cursor": board["next_cursor"]}, doseq=True)
                latencies["board page 2"].append(call("/orders?" + params)[1])
            latencies["job document"].append(call(f"/orders/{rng.randint(1, orders)}")[1])
            time.sleep(rng.expovariate(1 / think))

    with ThreadPoolExecutor(len(numbers)) as pool:
        list(pool.map(client, numbers))
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)


def bench_orders(
    out: Path,
    orders: int = 10_000,
    lines_per_order: int = 100,
    clients: int = 50,
    seconds: float = 30.0,
    think: float = 1.0,
    client_processes: int = 5,
) -> None:
    """The order board and the job document over loopback with 10k orders and 1M lines in the tenant,
    50 independent clients; beside them, the same board and document queries as bare SQL, one at a
    time, which is the database's share of each answer. The tables are vacuumed after the seed, as
    autovacuum keeps a tenant's (else it starts in the middle of the run); the load average before
    and after the clients is in the summary (the machine is shared)."""
    import socket
    from concurrent.futures import ProcessPoolExecutor

    import httpx
    from sqlalchemy import text

    from automat_pipeline.api.security import hash_password
    from automat_pipeline.db.database import engine
    from automat_pipeline.embedded import prepare

    load_at_start = os.getloadavg()  # the others' load: the seed below adds its own
    for key in [k for k in os.environ if k.startswith("AUTOMAT_")]:
        del os.environ[key]
    prepare(Settings(home=out / "orders-home"))
    started = time.perf_counter()
    url = os.environ["AUTOMAT_DATABASE_URL"]
    with engine(url).begin() as conn:
        for statement in ORDERS_SEED.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), {"orders": orders, "lines_per_order": lines_per_order})
        conn.execute(
            text(
                "INSERT INTO users (tenant_id, email, email_normalized, password_hash, role) VALUES "
                "(1, 'pm@acme.example', 'pm@acme.example', :h, 'project_manager')"
            ),
            {"h": hash_password("bench password")},
        )
    with engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    seed_seconds = time.perf_counter() - started
    bare = {"board newest (SQL)": [], "job document (SQL)": []}
    with engine(url).connect() as conn:
        for n in range(200):
            began = time.perf_counter()
            conn.execute(text("SELECT status, count(*) FROM orders WHERE tenant_id = 1 GROUP BY 1")).all()
            conn.execute(text(BARE_BOARD)).all()
            bare["board newest (SQL)"].append(time.perf_counter() - began)
            began = time.perf_counter()
            conn.execute(
                text("SELECT * FROM order_lines WHERE order_id = :o AND tenant_id = 1 ORDER BY id"),
                {"o": 1 + n * 37 % orders},
            ).all()
            bare["job document (SQL)"].append(time.perf_counter() - began)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "automat"), "api", "--port", str(port)],
        env={**os.environ, "AUTOMAT_DAGSTER_GRAPHQL_URL": "http://127.0.0.1:9/graphql"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        token = httpx.post(
            f"{base}/auth/login", json={"email": "pm@acme.example", "password": "bench password"}
        ).json()["access_token"]
        latencies: dict[str, list[float]] = {}
        load_before = os.getloadavg()
        with ProcessPoolExecutor(client_processes) as pool:
            shares = [list(range(clients))[k::client_processes] for k in range(client_processes)]
            arguments = [(port, token, share, orders, seconds, think) for share in shares]
            for part in pool.map(order_clients, *zip(*arguments, strict=True)):
                for name, values in part.items():
                    latencies.setdefault(name, []).extend(values)
        load_after = os.getloadavg()
    finally:
        api.terminate()
        api.wait(timeout=30)
    rows = [
        {
            "request": name,
            "count": len(v),
            "p50_ms": percentile(v, 0.5),
            "p95_ms": percentile(v, 0.95),
            "p99_ms": percentile(v, 0.99),
        }
        for name, v in {**latencies, **bare}.items()
        if v
    ]
    board = [x for name, v in latencies.items() if name.startswith("board") for x in v]
    summary = {
        "orders": orders,
        "lines": orders * lines_per_order,
        "clients": clients,
        "think_seconds": think,
        "seconds": seconds,
        "seed_seconds": round(seed_seconds, 1),
        "board_p50_ms": percentile(board, 0.5),
        "board_p95_ms": percentile(board, 0.95),
        "document_p50_ms": percentile(latencies["job document"], 0.5),
        "document_p95_ms": percentile(latencies["job document"], 0.95),
        "bare_sql_board_p50_ms": percentile(bare["board newest (SQL)"], 0.5),
        "bare_sql_document_p50_ms": percentile(bare["job document (SQL)"], 0.5),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "goal": "order board and job document p95 <= 50 ms",
    }
    table(rows, ["request", "count", "p50_ms", "p95_ms", "p99_ms"])
    print(summary)
    save("orders", rows, summary)


NOTIFY_SEED = """
INSERT INTO users (tenant_id, email, email_normalized, password_hash, role)
SELECT 1, r || '@acme.example', r || '@acme.example', 'x', (ARRAY['client', 'project_manager', 'project_manager',
       'tenant_admin'])[n] FROM unnest(ARRAY['client', 'pm1', 'pm2', 'ta']) WITH ORDINALITY AS u(r, n);
"""
NOTIFY_TYPES = ["order.completed", "order.submitted", "order_line.completed", "order_line.failed"]


def _order_with_lines(url: str, lines: int, creator: int) -> tuple[int, list[int]]:
    """A submitted order of ``lines`` queued lines of tenant acme; its id and line ids."""
    from sqlalchemy import text

    from automat_pipeline.db.database import engine

    with engine(url).begin() as conn:
        number = conn.execute(text("SELECT count(*) + 1 FROM orders")).scalar()
        order = conn.execute(
            text(
                "INSERT INTO orders (tenant_id, number, created_by, status, submitted_at) VALUES "
                "(1, :n, :c, 'submitted', now()) RETURNING id"
            ),
            {"n": f"ORD-2000-{number:06d}", "c": creator},  # a year of their own: the API draws this one's
        ).scalar()
        ids = conn.execute(
            text(
                "INSERT INTO order_lines (tenant_id, order_id, product_id, output_type, state, run_id) "
                "SELECT 1, :o, p.id, 'still-web', 'queued', md5(:o || '-' || p.id) FROM "
                "(SELECT id FROM products WHERE tenant_id = 1 ORDER BY id LIMIT :lines) p RETURNING id"
            ),
            {"o": order, "lines": lines},
        ).scalars()
        return order, sorted(ids)


def _finished_runs(line_ids: list[int], url: str, failing: int):
    """A Dagster instance holding a finished run per line (the last ``failing`` failed),
    tagged as the launcher tags them, for the real order_lines sensor to read."""
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from sqlalchemy import text

    from automat_pipeline import tags
    from automat_pipeline.db.database import engine

    instance = DagsterInstance.local_temp()  # SQLite run storage: runs ordered by update time, as PostgreSQL's
    with engine(url).connect() as conn:
        runs = dict(conn.execute(text("SELECT id, run_id FROM order_lines WHERE id = ANY(:i)"), {"i": line_ids}).all())
    for n, line_id in enumerate(line_ids):
        status = DagsterRunStatus.FAILURE if n >= len(line_ids) - failing else DagsterRunStatus.SUCCESS
        create_run_for_test(instance, run_id=runs[line_id], status=status, tags={tags.ORDER_LINE: str(line_id)})
    return instance


def _wait(probe, seconds: float = 120.0) -> float:
    """Poll ``probe`` (every 20 ms) until true; the perf_counter time it became true."""
    deadline = time.perf_counter() + seconds
    while not probe():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"not within {seconds} s")
        time.sleep(0.02)
    return time.perf_counter()


def _fanout_round(settings: Settings, order: int, line_ids: list[int], failing: int, mailbox, receiver) -> dict:
    """The order's runs end; the real order_lines sensor records them tick by tick (500 runs each), the
    last finishing the order, while the deliverer (``automat notify``) runs: seconds from that tick's start until
    the summary is in-app for its three recipients, in the creator's mailbox and at the webhook, and
    until every POST of the order arrived."""
    from dagster import build_sensor_context
    from sqlalchemy import text

    from automat_pipeline.db.database import session
    from automat_pipeline.defs.orders.sensor import order_lines
    from automat_pipeline.defs.resources import Database, MediaStore

    instance = _finished_runs(line_ids, settings.database_url, failing)
    mails, posts = len(mailbox.messages), len(receiver.requests)
    database = {
        "database": Database(url=settings.database_url),
        "media": MediaStore(uploads_dir=str(settings.uploads_dir), media_dir=str(settings.media_dir)),
    }
    unfinished = "SELECT count(*) FROM order_lines WHERE order_id = :o AND state NOT IN ('completed', 'failed')"
    ticks, cursor = [], None
    with session(settings.database_url) as s:
        while True:  # ticks as the daemon makes them (each reads 500 runs), until one finishes the order
            t0 = time.perf_counter()
            context = build_sensor_context(instance=instance, cursor=cursor, resources=database)
            order_lines(context)
            ticks.append(time.perf_counter() - t0)
            cursor = context.cursor
            if not s.execute(text(unfinished), {"o": order}).scalar():
                break
    first_tick, completing_tick = ticks[0], ticks[-1]
    notes = "SELECT count(*) FROM notifications n JOIN events e ON e.id = n.event_id WHERE e.subject = :s"
    with session(settings.database_url) as s:
        t_notes = _wait(lambda: s.execute(text(notes), {"s": f"order:{order}"}).scalar() >= 3)
    t_mail = _wait(lambda: len(mailbox.messages) > mails)
    t_hook = _wait(lambda: any(b'"order.completed"' in r.body for r in receiver.requests[posts:]))
    t_all = _wait(lambda: len(receiver.requests) - posts >= len(line_ids) + 1, 300)
    return {
        "ticks": len(ticks),
        "first_tick_s": round(first_tick, 3),
        "completing_tick_s": round(completing_tick, 3),
        "in_app_s": round(t_notes - t0, 3),
        "email_s": round(t_mail - t0, 3),
        "webhook_summary_s": round(t_hook - t0, 3),
        "all_sent_s": round(t_all - t0, 3),
    }


BARE_WRITES = [
    "UPDATE order_lines SET state = 'completed', ended_at = now(), outputs = '[]' WHERE order_id = :o",
    "INSERT INTO events (tenant_id, key, type, category, subject, data) SELECT 1, 'bare:' || id, "
    "'order_line.completed', 'orders', 'order_line:' || id, '{}' FROM order_lines WHERE order_id = :o",
    "INSERT INTO deliveries (tenant_id, key, channel, webhook_id, target, state) SELECT 1, 'bare:' || id, "
    "'webhook', 1, 'x', 'sent' FROM order_lines WHERE order_id = :o",
    "INSERT INTO notifications (tenant_id, user_id, key, category, kind, title, body) SELECT 1, id, "
    "'bare:' || :o || ':' || id, 'orders', 'order_summary', 'bare', 'bare' FROM users WHERE tenant_id = 1 LIMIT 3",
]


def _bare_round(url: str, order: int, lines: int, mailbox, receiver) -> dict:
    """The same rows written with bare SQL (one statement each), the same POSTs and the e-mail sent
    by a bare loop: no sensor, no signing, no bookkeeping per delivery."""
    import smtplib
    from email.message import EmailMessage

    import httpx
    from sqlalchemy import text

    from automat_pipeline.db.database import engine

    t0 = time.perf_counter()
    with engine(url).begin() as conn:
        for statement in BARE_WRITES:
            conn.execute(text(statement), {"o": order})
    sql = time.perf_counter() - t0
    with httpx.Client() as http:
        for n in range(lines + 1):
            http.post(receiver.url, content=json.dumps({"n": n}).encode())
    with smtplib.SMTP("127.0.0.1", mailbox.port) as smtp:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "automat@localhost", "client@acme.example", "bare"
        mail.set_content("bare")
        smtp.send_message(mail)
    return {"sql_s": round(sql, 3), "all_sent_s": round(time.perf_counter() - t0, 3)}


def _submissions(port: int, url: str, clients: int, seconds: float, think: float, processes: int) -> dict:
    """Order submission and browsing latencies under the api load generator, with the deliverer
    process sending (A) and not (B), in alternating rounds, while a feeder writes 200 line events every
    2 s (what the pipeline adds while orders finish); the deliveries each round sent."""
    import threading
    from concurrent.futures import ProcessPoolExecutor

    import httpx
    from sqlalchemy import text

    from automat_pipeline.db.database import engine, session
    from automat_pipeline.notify import events

    def sent() -> int:
        with engine(url).connect() as conn:
            return conn.execute(text("SELECT count(*) FROM deliveries WHERE state = 'sent'")).scalar()

    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.wait(2.0):
            n += 1
            with session(url) as s, s.begin():
                rows = [
                    {"tenant_id": 1, "key": f"feed:{n}:{i}", "type": "order_line.completed", "subject": None}
                    | {"owner_id": None, "actor_id": None, "data": {}}
                    for i in range(200)
                ]
                events.write(s, rows)

    token = httpx.post(
        f"http://127.0.0.1:{port}/auth/login", json={"email": "pm1@acme.example", "password": "bench password"}
    ).json()["access_token"]
    loads: dict[str, dict[str, list[float]]] = {"A deliveries on": {}, "B deliveries off": {}}
    delivered = dict.fromkeys(loads, 0)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    env = {**os.environ, "AUTOMAT_DAGSTER_GRAPHQL_URL": "http://127.0.0.1:9/graphql"}
    notify = None
    try:
        for name in list(loads) * 2:
            if name.startswith("A"):
                notify = subprocess.Popen([str(REPO / ".venv" / "bin" / "automat"), "notify"], env=env)
            before = sent()
            with ProcessPoolExecutor(processes) as pool:
                shares = [list(range(clients))[k::processes] for k in range(processes)]
                arguments = [(port, token, share, 100_000, seconds, think, False) for share in shares]
                for part in pool.map(api_clients, *zip(*arguments, strict=True)):
                    for request, values in part.items():
                        loads[name].setdefault(request, []).extend(values)
            delivered[name] += sent() - before
            if notify is not None:
                notify.terminate()
                notify.wait(30)
                notify = None
    finally:
        stop.set()
        if notify is not None:
            notify.terminate()
            notify.wait(30)
    rows = []
    for name, latencies in loads.items():
        submit = latencies["submit order"]
        browse = [x for request, values in latencies.items() if request != "submit order" for x in values]
        rows.append(
            {
                "mode": name,
                "submissions": len(submit),
                "submit_p50_ms": percentile(submit, 0.5),
                "submit_p95_ms": percentile(submit, 0.95),
                "submit_p99_ms": percentile(submit, 0.99),
                "browse_p95_ms": percentile(browse, 0.95),
                "deliveries_sent": delivered[name],
            }
        )
    return rows


def bench_notify(
    out: Path,
    lines: int = 1000,
    failing: int = 30,
    rounds: int = 3,
    clients: int = 50,
    seconds: float = 30.0,
    think: float = 1.0,
    client_processes: int = 5,
) -> None:
    """Notifications, two figures. Fan-out: a ``lines``-line order (``failing`` failed) finished by
    the real ``order_lines`` sensor and fanned out and sent by the deliverer (polling every second) to
    three recipients in-app, the creator by e-mail (loopback SMTP) and a webhook subscribed to the
    order's and its lines' events (``lines`` + 1 signed POSTs), beside bare SQL and a bare sending loop
    doing the same, in alternating rounds (``_fanout_round``, ``_bare_round``). Then order submission
    latency under the api load with deliveries on and off (``_submissions``)."""
    import socket

    import httpx
    from sqlalchemy import text

    sys.path.insert(0, str(REPO / "tests"))
    from loopback import Mailbox, Receiver

    from automat_pipeline.api.security import hash_password
    from automat_pipeline.db.database import engine
    from automat_pipeline.embedded import prepare

    for key in [k for k in os.environ if k.startswith("AUTOMAT_")]:
        del os.environ[key]
    with Mailbox() as mailbox, Receiver() as receiver:
        settings = prepare(
            Settings(home=out / "notify-home", smtp_url=mailbox.url(), webhook_private_networks=True)
        ).settings
        url = settings.database_url
        started = time.perf_counter()
        with engine(url).begin() as conn:
            for statement in (SEED + NOTIFY_SEED).split(";\n"):
                if statement.strip():
                    conn.execute(text(statement), {"products": 100_000, "media": 1_000_000})
            conn.execute(
                text("UPDATE users SET password_hash = :h WHERE email = 'pm1@acme.example'"),
                {"h": hash_password("bench password")},
            )
            conn.execute(
                text("INSERT INTO webhooks (tenant_id, url, event_types, secret) VALUES (1, :u, :t, :s)"),
                {"u": receiver.url, "t": json.dumps(NOTIFY_TYPES), "s": "a-bench-secret-0123456789"},
            )
            creator = conn.execute(text("SELECT id FROM users WHERE email = 'client@acme.example'")).scalar()
        seed_seconds = time.perf_counter() - started
        rows = []
        env = {**os.environ, "AUTOMAT_DAGSTER_GRAPHQL_URL": "http://127.0.0.1:9/graphql"}
        deliverer = subprocess.Popen([str(REPO / ".venv" / "bin" / "automat"), "notify"], env=env)  # as deployed
        try:
            time.sleep(5)  # started and polling
            for round_ in range(rounds):
                for way in ("automat", "bare"):
                    order, line_ids = _order_with_lines(url, lines, creator)
                    if way == "automat":
                        row = _fanout_round(settings, order, line_ids, failing, mailbox, receiver)
                    else:
                        row = _bare_round(url, order, lines, mailbox, receiver)
                    rows.append({"round": round_, "way": way} | row)
                    print(rows[-1], flush=True)
        finally:
            deliverer.terminate()
            deliverer.wait(30)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        api = subprocess.Popen([str(REPO / ".venv" / "bin" / "automat"), "api", "--port", str(port)], env=env)
        try:
            for _ in range(120):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            load_rows = _submissions(port, url, clients, seconds, think, client_processes)
        finally:
            api.terminate()
            api.wait(timeout=30)

    summary = {"lines": lines, "failing": failing, "rounds": rounds, "seed_seconds": round(seed_seconds, 1)}
    for key in ("completing_tick_s", "in_app_s", "email_s", "webhook_summary_s", "all_sent_s"):
        values = sorted(r[key] for r in rows if r["way"] == "automat")
        summary[f"fanout_{key}_median"] = values[len(values) // 2]
    bare = sorted(r["all_sent_s"] for r in rows if r["way"] == "bare")
    summary["bare_all_sent_s_median"] = bare[len(bare) // 2]
    summary["all_sent_ratio"] = round(summary["fanout_all_sent_s_median"] / summary["bare_all_sent_s_median"], 2)
    summary |= {row["mode"]: row for row in load_rows}
    summary["goal"] = "a 1,000-line order fans out within a few seconds; submission p95 <= 50 ms while deliveries run"
    columns = ["round", "way", "ticks", "first_tick_s", "completing_tick_s", "in_app_s", "email_s", "webhook_summary_s"]
    table(rows, [*columns, "sql_s", "all_sent_s"])
    table(load_rows, list(load_rows[0]))
    print(summary)
    save("notify", rows + load_rows, summary)


BARE_API = """from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health() -> dict:
    return {}
"""


def bench_api_worker(out: Path, rounds: int = 7) -> None:
    """One API worker process from its start to its first answer, and its memory then (RSS), beside a
    bare FastAPI app on the same uvicorn, taken in turns: what our imports and wiring add."""
    import urllib.request

    import psutil

    from automat_pipeline.embedded import prepare

    settings = prepare(Settings(home=out / "api-home")).settings
    (out / "bare_api.py").write_text(BARE_API)
    commands = {
        "automat": ["automat_pipeline.api.app:create_app", "--factory"],
        "bare": ["bare_api:app"],
    }
    rows = []
    for round_ in range(rounds):
        for name, target in commands.items():
            port = 18700 + round_ * 2 + (name == "bare")
            started = time.perf_counter()
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", *target, "--port", str(port), "--log-level", "warning"],
                cwd=out,
                env={**os.environ, **settings.environment()},
            )
            try:
                while True:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
                        break
                    except OSError:
                        time.sleep(0.01)
                seconds = time.perf_counter() - started
                rss = psutil.Process(server.pid).memory_info().rss / 2**20
            finally:
                server.terminate()
                server.wait()
            rows.append({"app": name, "round": round_, "start_s": round(seconds, 3), "rss_mb": round(rss, 1)})
    table(rows, ["app", "round", "start_s", "rss_mb"])

    def median(app: str, column: str) -> float:
        values = sorted(r[column] for r in rows if r["app"] == app)
        return values[len(values) // 2]

    summary = {
        "automat_start_s": median("automat", "start_s"),
        "automat_rss_mb": median("automat", "rss_mb"),
        "bare_start_s": median("bare", "start_s"),
        "bare_rss_mb": median("bare", "rss_mb"),
        "goal": "API worker RSS under 150 MB and start under 1.5 s",
    }
    summary["start_ratio"] = round(summary["automat_start_s"] / summary["bare_start_s"], 2)
    summary["rss_ratio"] = round(summary["automat_rss_mb"] / summary["bare_rss_mb"], 2)
    print(summary)
    save("api_worker", rows, summary)


STATIC_GRID = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>100 tiles</title>
<style>ul {{ display: grid; grid-template-columns: repeat(auto-fill, 168px); gap: 12px; list-style: none; }}
li {{ width: 168px; height: 254px; border: 1px solid #ccc; }}</style></head><body><h1>Products</h1><ul>{tiles}</ul>
</body></html>"""
GRID_DECODED = """n => { const images = [...document.querySelectorAll('img')];
    return images.length === n && images.every(i => i.complete && i.naturalWidth > 0); }"""
SHIFTS = """() => { window.shifts = 0; new PerformanceObserver(list => list.getEntries()
    .forEach(e => { window.shifts += e.value; })).observe({type: 'layout-shift', buffered: true}); }"""


def bench_portal(out: Path, rounds: int = 7, tiles: int = 100) -> None:
    """The portal (served by ``automat api``) and a bare static page of the same tiles and PNGs
    (Python's http.server), each opened cold in a fresh browser context, in turns: first contentful
    paint, the portal's first render (its login form), and from navigation to 100 thumbnails decoded
    (the portal signed in: its tokens put in the tab's session storage, as after a login)."""
    import shutil
    import socket

    import httpx
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO / "tests"))
    from portal_browser import add_converted_product, add_thumbnailed_products, convert_bearing, launch

    from automat_pipeline.api.security import Role, new_user
    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.embedded import prepare

    for key in [k for k in os.environ if k.startswith("AUTOMAT_")]:
        del os.environ[key]
    settings = prepare(Settings(home=out / "portal-home")).settings
    env = {"AUTOMAT_DATABASE_URL": os.environ["AUTOMAT_DATABASE_URL"], "AUTOMAT_MEDIA_DIR": str(settings.media_dir)}
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant = repository.tenant(s, "acme").id
        s.add(new_user("client@acme.example", "bench password", Role.client, tenant))
    bearing = add_converted_product(env, tenant, "DGBB-6204", convert_bearing(Path(tempfile.mkdtemp(dir=out))))
    add_thumbnailed_products(env, tenant, tiles - 1)
    static = out / "static"
    static.mkdir()
    for n, png in enumerate(sorted(Path(settings.media_dir).rglob("*.png"))):
        shutil.copyfile(png, static / f"{n}.png")
    (static / "index.html").write_text(
        STATIC_GRID.format(
            tiles="".join(f'<li><img src="{n}.png" width="168" height="168" alt=""></li>' for n in range(tiles))
        )
    )
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    servers = [
        subprocess.Popen([str(REPO / ".venv" / "bin" / "automat"), "api", "--port", str(ports[0])], env=os.environ),
        subprocess.Popen(
            [sys.executable, "-m", "http.server", str(ports[1]), "--bind", "127.0.0.1"],
            cwd=static,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    portal, bare = (f"http://127.0.0.1:{port}" for port in ports)
    rows = []
    try:
        for url in (f"{portal}/health", f"{bare}/index.html"):
            for _ in range(240):
                try:
                    if httpx.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.25)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for round_ in range(rounds):
                for name in ("portal", "bare"):
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    if name == "portal":
                        page.goto(f"{portal}/portal/#/login")
                        page.wait_for_selector("#email")
                        first = page.evaluate(
                            "[performance.getEntriesByName('first-contentful-paint')[0].startTime,"
                            " performance.getEntriesByName('portal:rendered')[0].startTime]"
                        )
                        tokens = httpx.post(
                            f"{portal}/auth/login", json={"email": "client@acme.example", "password": "bench password"}
                        ).json()
                        signed_in = {
                            "access": tokens["access_token"],
                            "refresh": tokens["refresh_token"],
                            "role": "client",
                            "tenant_id": tenant,
                            "email": "client@acme.example",
                        }
                        context.close()
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        context.add_init_script(
                            f"sessionStorage.setItem('automat.session', {json.dumps(json.dumps(signed_in))})"
                        )
                        page = context.new_page()
                        page.goto(f"{portal}/portal/#/products")
                    else:
                        page.goto(f"{bare}/index.html")
                        first = [
                            page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
                        ] * 2
                    page.evaluate(SHIFTS)
                    page.wait_for_function(GRID_DECODED, arg=tiles, polling=10, timeout=60_000)
                    grid = page.evaluate("performance.now()")
                    rows.append(
                        {
                            "page": name,
                            "round": round_,
                            "first_paint_ms": round(first[0], 1),
                            "first_render_ms": round(first[1], 1),
                            "grid_decoded_ms": round(grid, 1),
                            "layout_shift": round(page.evaluate("window.shifts"), 4),
                        }
                    )
                    context.close()
            shots = REPO / "docs" / "portal"
            shots.mkdir(parents=True, exist_ok=True)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(f"sessionStorage.setItem('automat.session', {json.dumps(json.dumps(signed_in))})")
            page = context.new_page()
            page.goto(f"{portal}/portal/#/products")
            page.wait_for_function(GRID_DECODED, arg=tiles, polling=50, timeout=60_000)
            page.screenshot(path=str(shots / "products.jpg"), type="jpeg", quality=60)
            page.goto(f"{portal}/portal/#/products/{bearing}")
            page.wait_for_selector("model-viewer[data-loaded]", timeout=60_000)
            page.screenshot(path=str(shots / "product-3d.jpg"), type="jpeg", quality=60)
            context.close()
            browser.close()
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    table(rows, ["page", "round", "first_paint_ms", "first_render_ms", "grid_decoded_ms", "layout_shift"])

    def median(page: str, column: str) -> float:
        values = sorted(r[column] for r in rows if r["page"] == page)
        return values[len(values) // 2]

    summary = {
        "tiles": tiles,
        "rounds": rounds,
        "portal_first_paint_ms": median("portal", "first_paint_ms"),
        "portal_first_render_ms": median("portal", "first_render_ms"),
        "portal_grid_decoded_ms": median("portal", "grid_decoded_ms"),
        "portal_layout_shift_max": max(r["layout_shift"] for r in rows if r["page"] == "portal"),
        "bare_first_paint_ms": median("bare", "first_paint_ms"),
        "bare_grid_decoded_ms": median("bare", "grid_decoded_ms"),
        "goal": "first paint and first render under 1 s on loopback; no layout shift while thumbnails arrive",
    }
    summary["first_paint_ratio"] = round(summary["portal_first_paint_ms"] / summary["bare_first_paint_ms"], 2)
    summary["grid_ratio"] = round(summary["portal_grid_decoded_ms"] / summary["bare_grid_decoded_ms"], 2)
    print(summary)
    save("portal", rows, summary)


# --- A 100,000-row catalogue into a new tenant, the first tick after it, the UI's partition health ---------

PARTITION_HEALTH = """query($assetKey: AssetKeyInput!) { assetNodeOrError(assetKey: $assetKey) { ... on AssetNode {
  id partitionKeysByDimension { name type partitionKeys }
  assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions
  failedPartitions } } } } }"""


def _tick(instance, resources: dict, cursor: str | None) -> tuple[float, object]:
    from dagster import build_sensor_context

    from automat_pipeline.defs.uploads.sensor import upload_sensor

    started = time.perf_counter()
    result = upload_sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    return time.perf_counter() - started, result


def requested_partitions(instance, result) -> list[str]:
    """The product partitions a sensor result's run requests cover (ranges resolved), its
    partition additions applied to ``instance`` first, as the daemon does."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    order = instance.get_dynamic_partitions("products")
    found = []
    for request in result.run_requests or []:
        if request.job_name != "product_media":
            continue
        if request.partition_key:
            found.append(request.partition_key)
        else:
            start = order.index(request.tags[ASSET_PARTITION_RANGE_START_TAG])
            found += order[start : order.index(request.tags[ASSET_PARTITION_RANGE_END_TAG]) + 1]
    return found


def bench_scale(out: Path, rows: int = 100_000, files: int = 10_000) -> None:
    """A new tenant's 100,000-row catalogue in a database whose statistics know another tenant's:
    the import as the pipeline runs it (product_catalog: read, write, partition registration; the
    report is its own step), then the upload sensor's first tick with ``files`` STEP files waiting
    (the fixture files in turn, under the names the catalogue gives them); then the partition
    health the Dagster UI loads per asset page, from a webserver on that instance."""
    from dagster import AssetMaterialization, DagsterInstance, materialize
    from sqlalchemy import text

    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.defs.catalog.assets import catalog_report, product_catalog
    from automat_pipeline.defs.resources import resources_from
    from automat_pipeline.embedded import prepare

    for key in [k for k in os.environ if k.startswith(("AUTOMAT_", "DAGSTER_"))]:
        del os.environ[key]
    os.environ["AUTOMAT_HOME"] = str(out / "scale-home")
    stack = prepare()
    settings = stack.settings
    resources = resources_from(settings)
    workbook = out / "products.xlsx"
    started = time.perf_counter()
    write_product_list(workbook, rows)
    generate = time.perf_counter() - started
    fixtures = convertible_fixtures()
    figures: dict = {"rows": rows, "step_files": files, "generate_seconds": round(generate, 1)}
    with DagsterInstance.get() as instance:
        for tenant in ("first", "second"):
            with session(settings.database_url) as s, s.begin():
                repository.tenant(s, tenant)
            instance.add_dynamic_partitions("tenants", [tenant])
            settings.uploads_dir.joinpath(tenant).mkdir(parents=True)
            shutil.copyfile(workbook, settings.uploads_dir / tenant / "products.xlsx")
        assert materialize([product_catalog], partition_key="first", instance=instance, resources=resources).success
        with session(settings.database_url) as s, s.begin():
            s.execute(text("ANALYZE"))  # statistics that know the first tenant only
        figures["at_100k_partitions"] = _partition_health(settings)
        inbox = settings.uploads_dir / "second"
        hashed = 0
        for i in range(files):
            step = fixtures[i % len(fixtures)]
            shutil.copyfile(step, inbox / f"P-{i:06d}.step")
            hashed += step.stat().st_size
        figures["step_file_bytes"] = hashed
        # The files wait: a tick sees (hashes) them while no product names them yet.
        figures["tick_with_new_files_seconds"], result = _tick(instance, resources, None)
        cursor = result.cursor
        started = time.perf_counter()
        imported = materialize([product_catalog], partition_key="second", instance=instance, resources=resources)
        figures["new_tenant_import_seconds"] = round(time.perf_counter() - started, 2)
        assert imported.success
        meta = {k: v.value for k, v in imported.get_asset_materialization_events()[0].materialization.metadata.items()}
        figures["created"], figures["partitions"] = meta["created"], len(instance.get_dynamic_partitions("products"))
        started = time.perf_counter()
        materialize([catalog_report], partition_key="second", instance=instance, resources=resources)
        figures["report_seconds_off_the_critical_path"] = round(time.perf_counter() - started, 2)
        seconds, result = _tick(instance, resources, cursor)
        figures["first_tick_after_import_seconds"] = round(seconds, 2)
        figures["runs_requested"] = len(result.run_requests)
        figures["products_requested"] = len(requested_partitions(instance, result))
        figures["idle_tick_seconds"] = round(_tick(instance, resources, result.cursor)[0], 3)
        for i in range(2000):  # some history for the partition health: materialized and failed thumbnails
            instance.report_runless_asset_event(AssetMaterialization("thumbnail", partition=f"second|P-{i:06d}"))
    figures["tick_with_new_files_seconds"] = round(figures["tick_with_new_files_seconds"], 2)
    figures["at_200k_partitions"] = _partition_health(settings)  # two tenants' products, 2,000 thumbnails made
    print(figures)
    save("scale", [], figures)


def _partition_health(settings) -> dict:
    """Seconds and bytes of the query the asset page sends for its partition health bar, 5 times."""
    import socket

    import httpx

    from automat_pipeline.ui import _stop

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    webserver = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-p", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.post(url, json={"query": "{ version }"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the webserver did not answer"
            time.sleep(1)
        found = {}
        for asset in ("thumbnail", "glb_geometry"):
            times, size = [], 0
            for _ in range(5):
                started = time.perf_counter()
                response = httpx.post(
                    url, json={"query": PARTITION_HEALTH, "variables": {"assetKey": {"path": [asset]}}}, timeout=120
                )
                times.append(time.perf_counter() - started)
                size = len(response.content)
                assert "errors" not in response.json(), response.text[:500]
            found[f"partition_health_{asset}"] = {
                "first_seconds": round(times[0], 3),
                "median_seconds": round(sorted(times)[2], 3),
                "bytes": size,
            }
        return found
    finally:
        _stop([webserver])


# --- Incremental: what a change re-does, against a full run ---------------------------------------------------


def bench_incremental(out: Path, n: int = 17) -> None:
    """The sensor and the runs it requests, in process (as ``automat demo`` runs them), over ``n``
    products: a full run, then one change at a time; per change the products whose media chain
    ran again and the seconds its runs took, against the full run."""
    from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter
    from openpyxl import Workbook

    from automat_pipeline.db import repository
    from automat_pipeline.db.database import session
    from automat_pipeline.db.models import MaterialAlias
    from automat_pipeline.defs.resources import resources_from
    from automat_pipeline.demo import run_requested
    from automat_pipeline.embedded import prepare

    for key in [k for k in os.environ if k.startswith(("AUTOMAT_", "DAGSTER_"))]:
        del os.environ[key]
    os.environ["AUTOMAT_HOME"] = str(out / "incremental-home")
    stack = prepare()
    settings = stack.settings
    resources = resources_from(settings)
    database, media = resources["database"], resources["media"]
    with session(settings.database_url) as s, s.begin():
        repository.tenant(s, TENANT)
    inbox = settings.uploads_dir / TENANT
    inbox.mkdir(parents=True)
    work = products(convertible_fixtures(), n)
    materials = {key: "SCHAEFFLER_020201_Brass-Cage" for key, _ in work}
    names = {key: f"Produkt {key}" for key, _ in work}

    def write_catalogue():
        workbook = Workbook()
        workbook.active.append(["PIM-ID", "Bezeichnung", "STEP-Datei", "Material: Cage"])
        for key, step in work:
            workbook.active.append([key, names[key], f"{key}{step.suffix}", materials[key]])
        workbook.save(inbox / "products.xlsx")

    rows, log = [], out / "incremental.log"
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tenants", [TENANT])
        cursor = None

        def made(asset: str) -> int:
            found = EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, asset_key=AssetKey(asset))
            return len(instance.get_event_records(found, limit=100_000))

        def settle(change: str) -> None:
            nonlocal cursor
            ran, started = [], time.perf_counter()
            before = {asset: made(asset) for asset in ("step_file", "glb_production", "thumbnail")}
            while True:
                batch, cursor = run_requested(instance, database, media, log, cursor)
                if not batch:
                    break
                ran += batch
            rows.append(
                {
                    "change": change,
                    "runs": len(ran),
                    "media_runs": sum(r["job"] == "product_media" for r in ran),
                    **{f"{asset}_remade": made(asset) - count for asset, count in before.items()},
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            print(rows[-1], flush=True)

        for key, step in work:
            shutil.copyfile(step, inbox / f"{key}{step.suffix}")
        write_catalogue()
        settle("full run")
        for key, step in work:  # same bytes again: touched, and dropped anew
            os.utime(inbox / f"{key}{step.suffix}")
        (inbox / f"{work[0][0]}{work[0][1].suffix}").unlink()
        shutil.copyfile(work[0][1], inbox / f"{work[0][0]}{work[0][1].suffix}")
        settle("identical bytes touched and dropped again")
        key, step = work[1]
        target = inbox / f"{key}{step.suffix}"
        before = target.stat()
        target.write_bytes(target.read_bytes() + b"\n/* revised */\n")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        settle("one STEP file changed, modification time set back")
        names[work[2][0]] += " (neu)"
        write_catalogue()
        settle("one product renamed (no media input)")
        materials[work[3][0]] = "SCHAEFFLER_030301_Polyamide-Cage"
        write_catalogue()
        settle("one product's material assignment changed")
        with session(settings.database_url) as s, s.begin():
            tenant = repository.tenant(s, TENANT, create=False)
            s.add(MaterialAlias(tenant_id=tenant.id, pattern="*", material_name="SCHAEFFLER_010101_Steel-Bare"))
        settle("tenant alias added (not watched: a later trigger uses it)")
    full = rows[0]
    for row in rows:
        row["share_of_full_run_thumbnails"] = round(row["thumbnail_remade"] / full["thumbnail_remade"], 3)
        row["share_of_full_run_seconds"] = round(row["seconds"] / full["seconds"], 3)
    columns = ["change", "runs", "media_runs", "step_file_remade", "glb_production_remade", "thumbnail_remade"]
    table(rows, [*columns, "share_of_full_run_thumbnails", "seconds", "share_of_full_run_seconds"])
    save("incremental", rows, {"products": n, "full_run_seconds": full["seconds"]})


# --- The operator's path against the bare work -----------------------------------------------------------------

TENANT = "acme"


def convertible_fixtures() -> list[Path]:
    """The fixture STEP files our converter turns into GLBs (the convert section's 17), by size."""
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((p for p in FIXTURES.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size):
            try:
                convert_isolated(path, Path(tmp) / "probe.glb")
            except AutomatError:
                continue
            found.append(path)
    return found


def products(fixtures: list[Path], n: int) -> list[tuple[str, Path]]:
    """``n`` products, each with a fixture's STEP file, the fixtures in turn."""
    return [(f"P-{i:04d}", fixtures[i % len(fixtures)]) for i in range(n)]


def bare_work(jobs: str, out: str) -> None:
    """Child-process body: the same conversions and thumbnails as the pipeline makes, in one warm
    OpenCascade process (this one) and one warm Blender process; prints JSON. Timed from the first
    conversion (imports done) to the last thumbnail, Blender's start included."""
    from automat_pipeline import materials, output_types
    from automat_pipeline.tenant_settings import CadSettings

    settings = Settings()
    library = {m.name: m for m in materials.LIBRARY}
    thumbnail = next(t for t in output_types.merged([]) if t.kind == "thumbnail")
    library_file = Path(out) / "library.json"
    library_file.write_text(json.dumps(materials.for_blender(library, materials.FALLBACK)))
    work = [(key, Path(step), Path(out) / key) for key, step in json.loads(Path(jobs).read_text())]
    started = time.perf_counter()
    for _, step, folder in work:
        resolver = materials.MaterialResolver(library, materials.ALIASES, {}, materials.FALLBACK)
        convert_step(step, folder / "model.glb", CadSettings(), resolver, folder / "production.glb")
    converted = time.perf_counter()
    batch = Path(out) / "thumbnails.json"
    batch.write_text(
        json.dumps(
            [
                render_args(folder / "production.glb", folder / "thumbnail.png", thumbnail, library_file)
                for _, _, folder in work
            ]
        )
    )
    results = run_blender(
        blender_command(settings.blender, str(settings.blender_scripts), ["--batch", str(batch)]), timeout=3600
    )
    done = time.perf_counter()
    assert not any("error" in r for r in results), results
    print(
        json.dumps(
            {
                "seconds": round(done - started, 3),
                "convert_seconds": round(converted - started, 3),
                "render_seconds": round(done - converted, 3),
            }
        )
    )


def _first_sensor_tick(instance, deadline: float) -> None:
    from dagster._core.scheduler.instigation import InstigatorType

    while time.monotonic() < deadline:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1):
                return
        time.sleep(0.5)
    raise TimeoutError("the daemon's upload sensor never ticked")


def daemon_path(home: str, n: str, overrides: str) -> None:
    """Child-process body: a fresh AUTOMAT_HOME, a tenant, ``dagster-daemon`` on the shipped instance
    (with ``overrides``, a JSON object merged into its dagster.yaml); then ``n`` STEP files and the
    workbook naming them are written into the inbox and timed until every thumbnail is on disk. Prints JSON."""
    import yaml
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES
    from openpyxl import Workbook
    from sqlalchemy import text

    from automat_pipeline.db import repository
    from automat_pipeline.db.database import engine, session
    from automat_pipeline.embedded import prepare
    from automat_pipeline.ui import _stop

    os.environ["AUTOMAT_HOME"] = home
    settings = prepare().settings
    instance_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    config = yaml.safe_load(instance_yaml.read_text())

    def merged(base, changes):  # a null in the overrides removes that key
        if not isinstance(base, dict) or not isinstance(changes, dict):
            return changes
        updated = {**base, **{key: merged(base.get(key), value) for key, value in changes.items()}}
        return {key: value for key, value in updated.items() if value is not None}

    instance_yaml.write_text(yaml.safe_dump(merged(config, json.loads(overrides))))
    with session(settings.database_url) as s, s.begin():
        repository.tenant(s, TENANT)
    inbox = settings.uploads_dir / TENANT
    inbox.mkdir(parents=True)
    media = settings.media_dir / TENANT
    work = [(key, Path(step)) for key, step in json.loads(n)]
    storage = engine(settings.dagster_storage_url.replace("+psycopg2", "+psycopg"))
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tenants", [TENANT])
        log = (Path(home) / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _first_sensor_tick(instance, time.monotonic() + 300)
            with storage.connect() as c:
                sessions_before = c.execute(
                    text("SELECT sessions FROM pg_stat_database WHERE datname = 'dagster'")
                ).scalar()
            started = time.time()
            for key, step in work:
                shutil.copyfile(step, inbox / f"{key}{step.suffix}")
            workbook = Workbook(write_only=True)
            sheet = workbook.create_sheet("Produkte")
            sheet.append(["PIM-ID", "Bezeichnung", "STEP-Datei"])
            for key, step in work:
                sheet.append([key, f"Produkt {key} ({step.name})", f"{key}{step.suffix}"])
            workbook.save(inbox / ".products.xlsx")  # names starting with a dot are not uploads yet
            (inbox / ".products.xlsx").rename(inbox / "products.xlsx")
            waiting, last = {key for key, _ in work}, started
            deadline = time.monotonic() + 120 + 10 * len(work)
            while waiting and time.monotonic() < deadline:
                for key in list(waiting):
                    if (media / key / "thumbnail.png").exists():
                        waiting.discard(key)
                        last = time.time()
                failed = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                if failed:
                    break
                time.sleep(0.2)
            with storage.connect() as c:
                sessions = c.execute(text("SELECT sessions FROM pg_stat_database WHERE datname = 'dagster'")).scalar()
            while (
                instance.get_runs_count(RunsFilter(statuses=list(NOT_FINISHED_STATUSES))) and time.time() < last + 120
            ):
                time.sleep(0.5)  # the last run stores its events after its thumbnails are on disk
        finally:
            _stop([daemon])
            log.close()
        runs = []
        for record in instance.get_run_records():
            events = instance.all_logs(record.dagster_run.run_id)
            runs.append(
                {
                    "job": record.dagster_run.job_name,
                    "status": record.dagster_run.status.value,
                    "queued_to_start": round(record.start_time - record.create_timestamp.timestamp(), 2)
                    if record.start_time
                    else None,
                    "run_seconds": round(record.end_time - record.start_time, 2)
                    if record.start_time and record.end_time
                    else None,
                    "events": len(events),
                }
            )
    print(
        json.dumps(
            {
                "seconds": round(last - started, 3),
                "missing_thumbnails": sorted(waiting),
                "runs": len(runs),
                "runs_failed": sum(r["status"] != "SUCCESS" for r in runs),
                "events": sum(r["events"] for r in runs),
                "storage_connections": sessions - sessions_before,
                "run_detail": runs,
            }
        )
    )


def _child(*args: str, environment: dict | None = None) -> dict:
    """Run a body of this file (``_bare``, ``_daemon``) in a fresh process without our settings (but
    ``environment``); its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))} | (environment or {})
    done = subprocess.run(
        [sys.executable, __file__, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_daemon(
    out: Path,
    sizes=(17, 100),
    rounds: int = 2,
    overrides: dict | None = None,
    environment: dict | None = None,
    label: str = "",
) -> None:
    """Files dropped in the inbox → daemon, sensor, queue, run launcher as shipped → every thumbnail
    on disk, against the bare work (``bare_work``), in turns: A then B, then B then A. A lever is
    measured with ``overrides`` of the instance (dagster.yaml) or ``environment`` (settings) and a ``label``."""
    fixtures = convertible_fixtures()
    rows = []
    for round_ in range(rounds):
        for n in sizes:
            work = products(fixtures, n)
            jobs = out / f"jobs-{n}.json"
            jobs.write_text(json.dumps([(key, str(step)) for key, step in work]))
            order = ("bare", "daemon") if round_ % 2 == 0 else ("daemon", "bare")
            for kind in order:  # the machine is shared: its load (1-minute average) is recorded with each
                where = out / f"{kind}-{n}-{round_}"
                where.mkdir()
                if kind == "bare":
                    for key, _ in work:
                        (where / key).mkdir()
                    result = _child("_bare", str(jobs), str(where))
                else:
                    result = _child(
                        "_daemon", str(where), jobs.read_text(), json.dumps(overrides or {}), environment=environment
                    )
                    assert not result["missing_thumbnails"], result
                rows.append({"round": round_, "products": n, "path": kind, "load": os.getloadavg()[0], **result})
                print(f"round {round_} {n:4d} products {kind:6s} {result['seconds']:8.2f} s", flush=True)
    summary = {
        "label": label or "as shipped",
        "overrides": overrides or {},
        "environment": environment or {},
        "fixtures": len(fixtures),
        "rounds": rounds,
    }
    medians = {}
    for n in sizes:
        for kind in ("bare", "daemon"):
            values = sorted(r["seconds"] for r in rows if r["products"] == n and r["path"] == kind)
            medians[n, kind] = values[len(values) // 2]
        ratios = sorted(
            d["seconds"] / b["seconds"]
            for d in rows
            for b in rows
            if d["products"] == b["products"] == n
            and d["path"] == "daemon"
            and b["path"] == "bare"
            and d["round"] == b["round"]
        )
        daemon_runs = [r for r in rows if r["products"] == n and r["path"] == "daemon"]
        summary[str(n)] = {
            "bare_seconds": medians[n, "bare"],
            "daemon_seconds": medians[n, "daemon"],
            "ratio": round(medians[n, "daemon"] / medians[n, "bare"], 3),
            "ratio_per_round": [round(r, 3) for r in ratios],
            "runs": daemon_runs[0]["runs"],
            "events_per_product": round(sum(r["events"] for r in daemon_runs) / len(daemon_runs) / n, 1),
            "storage_connections_per_product": round(
                sum(r["storage_connections"] for r in daemon_runs) / len(daemon_runs) / n, 1
            ),
        }
    if len(sizes) > 1:
        low, high = min(sizes), max(sizes)
        marginal = {k: (medians[high, k] - medians[low, k]) / (high - low) for k in ("bare", "daemon")}
        summary["marginal_seconds_per_product"] = {k: round(v, 3) for k, v in marginal.items()}
        summary["marginal_ratio"] = round(marginal["daemon"] / marginal["bare"], 3)
    print(summary)
    save(
        f"daemon-{label}" if label else "daemon",
        [{k: v for k, v in r.items() if k != "run_detail"} for r in rows]
        + [
            {"run_detail": r["run_detail"], "products": r["products"], "round": r["round"]}
            for r in rows
            if r["path"] == "daemon"
        ],
        summary,
    )


def bench_hostile(out: Path, small: bool = False) -> None:
    """The hostile corpus through ``automat api`` (its own process, on loopback) and the inbox; the
    upload sensor and the import and conversion steps run in this process. ``small``: the slice
    tests/test_hostile_corpus.py sends (``hostile --slice``), saved as hostile-slice."""
    import hostile_corpus
    import httpx
    from sqlalchemy import text

    from automat_pipeline.api.security import hash_password
    from automat_pipeline.db.database import engine
    from automat_pipeline.embedded import prepare

    started = time.perf_counter()
    inputs = hostile_corpus.build(out / "hostile-corpus", Settings().fixtures_dir, small)
    build_seconds = time.perf_counter() - started
    settings = prepare(Settings(home=out / "hostile-home")).settings
    with engine(settings.database_url).begin() as conn:
        conn.execute(text("INSERT INTO tenants (slug, name) VALUES ('acme', 'ACME'), ('beta', 'Beta')"))
        conn.execute(
            text(
                "INSERT INTO users (tenant_id, email, email_normalized, password_hash, role) VALUES "
                "(1, 'pm@acme.example', 'pm@acme.example', :h, 'project_manager')"
            ),
            {"h": hash_password("bench password")},
        )
    port = 18650
    api = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "automat"), "api", "--port", str(port), "--workers", "1"],
        env={**os.environ, **settings.environment(), "AUTOMAT_DAGSTER_GRAPHQL_URL": "http://127.0.0.1:9/graphql"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        token = httpx.post(
            f"{base}/auth/login", json={"email": "pm@acme.example", "password": "bench password"}
        ).json()["access_token"]
        started = time.perf_counter()
        report = hostile_corpus.send(
            out / "hostile-corpus",
            inputs,
            base_url=base,
            headers={"Authorization": f"Bearer {token}"},
            api_tenant="acme",
            inbox_tenant="beta",
            database_url=settings.database_url,
            uploads_dir=settings.uploads_dir,
            media_dir=settings.media_dir,
        )
        seconds = time.perf_counter() - started
        api_died = api.poll() is not None
    finally:
        api.terminate()
        api.wait(timeout=30)

    rows = [asdict(o) | {"recorded": o.recorded, "python_error": o.python_error} for o in report.outcomes]
    families = sorted({(o.family, o.channel) for o in report.outcomes})
    table(
        [
            {
                "family": family,
                "channel": channel,
                "tried": len(mine := [o for o in report.outcomes if (o.family, o.channel) == (family, channel)]),
                "server_errors": sum(o.server_error for o in mine),
                "unrecorded": sum(not o.recorded for o in mine),
                "lost": sum(o.lost for o in mine),
            }
            for family, channel in families
        ],
        ["family", "channel", "tried", "server_errors", "unrecorded", "lost"],
    )
    for o in report.outcomes:
        if o.server_error or o.lost or not o.recorded or o.python_error:
            print(f"  {o.channel} {o.id} {o.name!r}: {o.http_status} {o.error_class}: {o.reason} {o.details}")
    summary = report.summary() | {
        "api_crashed": api_died,
        "build_seconds": round(build_seconds, 1),
        "seconds": round(seconds, 1),
        "goal": "0 server errors, 0 crashed ticks, steps or servers, 0 unrecorded, 0 Python errors in reasons, 0 lost",
    }
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    save("hostile-slice" if small else "hostile", rows, summary)


def bench_faults(out: Path) -> None:
    """Run the fault-injection suite; each test that passes records its fault's row (the test asserts
    the outcome; the seconds are only measured). A fault whose test failed counts as not survived."""
    report = out / "faults.json"
    tests = str(REPO / "tests" / "test_faults.py")
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", tests],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    injected = sum(1 for line in collected.splitlines() if "::test_" in line)
    env = {**os.environ, "AUTOMAT_FAULTS_REPORT": str(report)}
    suite = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", tests], cwd=REPO, env=env)
    rows = json.loads(report.read_text()) if report.exists() else []
    print("| fault injected | expected outcome | survived | data lost | measured |\n|---|---|---|---|---|")
    for r in rows:
        figures = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("fault", "expected", "survived", "lost"))
        print(f"| {r['fault']} | {r['expected']} | {'yes' if r['survived'] else 'no'} | {r['lost']} | {figures} |")
    summary = {
        "faults_injected": injected,
        "survived": sum(1 for r in rows if r["survived"]),
        "data_lost": sum(r["lost"] for r in rows),
        "suite_exit": suite.returncode,
        "goal": "every fault survived, 0 lost",
    }
    print(summary)
    save("faults", rows, summary)


def main() -> None:
    if sys.argv[1:2] == ["_one"]:
        return convert_one(*sys.argv[2:])
    if sys.argv[1:2] == ["_bare"]:
        return bare_work(*sys.argv[2:])
    if sys.argv[1:2] == ["_daemon"]:
        return daemon_path(*sys.argv[2:])
    options = dict((a[2:].split("=", 1) + [""])[:2] for a in sys.argv[1:] if a.startswith("--"))  # --flag, --key=v
    wanted = {a for a in sys.argv[1:] if not a.startswith("--")} or {
        "convert",
        "convert_batch",
        "worker_imports",
        "render",
        "look",
        "catalog",
        "api",
        "api_worker",
        "orders",
        "portal",
        "scale",
        "incremental",
        "daemon",
        "notify",
        "hostile",
        "faults",
    }
    with tempfile.TemporaryDirectory(prefix="automat-bench-") as tmp:
        out = Path(tmp)
        if "convert" in wanted:
            bench_convert(out)
        if "convert_batch" in wanted:
            bench_convert_batch(out)
        if "worker_imports" in wanted:
            bench_worker_imports()
        if "render" in wanted:
            bench_render(out)
        if "look" in wanted:
            bench_look(out)
        if "catalog" in wanted:
            bench_catalog(out)
        if "api" in wanted:
            bench_api(out)
        if "api_worker" in wanted:
            bench_api_worker(out)
        if "orders" in wanted:
            bench_orders(out)
        if "portal" in wanted:
            bench_portal(out)
        if "scale" in wanted:
            bench_scale(out)
        if "incremental" in wanted:
            bench_incremental(out)
        if "daemon" in wanted:  # --sizes=17,100 --rounds=2 --label=NAME --instance=JSON --env=KEY:VALUE,...
            bench_daemon(
                out,
                sizes=tuple(int(n) for n in options.get("sizes", "17,100").split(",")),
                rounds=int(options.get("rounds", 2)),
                overrides=json.loads(options.get("instance", "{}")),
                environment=dict(kv.split(":", 1) for kv in options["env"].split(",")) if "env" in options else None,
                label=options.get("label", ""),
            )
        if "notify" in wanted:
            bench_notify(out)
        if "hostile" in wanted:
            bench_hostile(out, small="slice" in options)
        if "faults" in wanted:
            bench_faults(out)


if __name__ == "__main__":
    main()
