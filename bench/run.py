"""Benchmarks: prints a table per figure and writes ``bench/results/<name>.json``.

    .venv/bin/python bench/run.py [convert] [thumbnail] [demo]      (default: all three)

- convert:   STEP→GLB seconds per fixture file (read, transfer, mesh, write), triangles, bytes
- thumbnail: Blender thumbnail seconds, one cold Blender process per render, per engine
- demo:      ``automat demo`` from an empty AUTOMAT_HOME: wall time against the sum of its step
             times (the orchestration overhead; the project's goal is <= 1.15x)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automat_pipeline.cad import convert_step  # noqa: E402
from automat_pipeline.errors import InputError  # noqa: E402
from automat_pipeline.render import blender_command, run_blender, thumbnail_args  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "step"
RESULTS = REPO / "bench" / "results"


def save(name: str, rows: list[dict], summary: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "summary": summary,
        "rows": rows,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=1))
    print(f"-> {RESULTS / f'{name}.json'}\n")


def table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def bench_convert(out: Path) -> list[Path]:
    rows, glbs = [], []
    for path in sorted(p for p in FIXTURES.rglob("*") if p.is_file()):
        started = time.perf_counter()
        try:
            result = convert_step(path, out / f"{path.stem}.glb")
        except InputError as error:
            rows.append({"file": path.name, "error": error.error_class})
            continue
        glbs.append(out / f"{path.stem}.glb")
        rows.append({"file": path.name, "kib": path.stat().st_size // 1024, **result.seconds,
                     "total": round(time.perf_counter() - started, 3), "parts": len(result.parts),
                     "triangles": result.triangles, "glb_bytes": result.glb_bytes})
    ok = [r for r in rows if "total" in r]
    summary = {"files": len(rows), "converted": len(ok), "refused": len(rows) - len(ok),
               "total_seconds": round(sum(r["total"] for r in ok), 3),
               **{f"{k}_seconds": round(sum(r[k] for r in ok), 3) for k in ("read", "transfer", "mesh", "write")}}
    print("STEP -> GLB per fixture file")
    table(rows, ["file", "kib", "read", "transfer", "mesh", "write", "total", "parts", "triangles", "glb_bytes",
                 "error"])
    print(summary)
    save("convert", rows, summary)
    return glbs


def bench_thumbnail(glbs: list[Path], out: Path) -> None:
    executable = str(REPO / ".venv-render" / "bin" / "python")
    rows = []
    for engine in ("cycles", "workbench"):
        for glb in glbs[:4]:
            command = blender_command(executable, str(REPO / "blender"), "render_thumbnail.py",
                                      thumbnail_args(glb, out / f"{glb.stem}-{engine}.png", 256, engine, 16))
            started = time.perf_counter()
            result = run_blender(command)
            rows.append({"glb": glb.name, "engine": engine, "wall": round(time.perf_counter() - started, 3),
                         "render": result["render_seconds"], "device": result["device"]})
    summary = {engine: {"median_wall_seconds": statistics.median(r["wall"] for r in rows if r["engine"] == engine),
                        "median_render_seconds": statistics.median(r["render"] for r in rows if r["engine"] == engine)}
               for engine in ("cycles", "workbench")}
    print("Thumbnail 256 px, 16 samples, one Blender process per render")
    table(rows, ["glb", "engine", "wall", "render", "device"])
    print(summary)
    save("thumbnail", rows, summary)


def bench_demo(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    env["AUTOMAT_HOME"] = str(home)
    started = time.perf_counter()
    subprocess.run([str(REPO / ".venv" / "bin" / "automat"), "demo"], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started

    from dagster import DagsterInstance

    from automat_pipeline.embedded import prepare

    os.environ.update(env)
    prepare(home)
    rows = []
    with DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            steps = instance.get_run_step_stats(run.run_id)
            rows.append({"job": run.job_name, "partition": run.tags.get("dagster/partition"),
                         "status": run.status.value,
                         "run_seconds": round(record.end_time - record.start_time, 3),
                         "step_seconds": round(sum(s.end_time - s.start_time for s in steps), 3)})
            rows[-1]["_span"] = (record.start_time, record.end_time)
    first, last = min(r["_span"][0] for r in rows), max(r["_span"][1] for r in rows)
    for r in rows:
        del r["_span"]
    steps_total = sum(r["step_seconds"] for r in rows)
    summary = {
        "runs": len(rows),
        "demo_wall_seconds": round(wall, 2),
        "pipeline_wall_seconds": round(last - first, 2),
        "sum_of_step_seconds": round(steps_total, 2),
        "pipeline_overhead_ratio": round((last - first) / steps_total, 3),
        "demo_overhead_ratio": round(wall / steps_total, 3),
    }
    print("automat demo from an empty AUTOMAT_HOME")
    table(sorted(rows, key=lambda r: r["partition"] or ""), ["job", "partition", "status", "run_seconds",
                                                             "step_seconds"])
    print(summary)
    save("demo", rows, summary)


def main() -> None:
    wanted = set(sys.argv[1:]) or {"convert", "thumbnail", "demo"}
    with tempfile.TemporaryDirectory(prefix="automat-bench-") as tmp:
        out = Path(tmp)
        glbs = bench_convert(out) if wanted & {"convert", "thumbnail"} else []
        if "thumbnail" in wanted:
            bench_thumbnail(glbs, out)
        if "demo" in wanted:
            bench_demo(out / "home")


if __name__ == "__main__":
    main()
