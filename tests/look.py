"""The look, in numbers: what each shipped library material must look like in every engine, and
the reference images a render is compared with.

Used by ``tests/test_look.py`` and by ``bench/run.py look`` (which writes the measured values to
``bench/results/look.json``). Regenerate the reference images deliberately, after a change to the
look that you have looked at:

    .venv/bin/python tests/look.py regenerate

**Material pictures.** A simple part (``6201-2RS_Ball_Bearing.step``: one part, a sealed bearing's
body) carrying one library material, rendered as a tenant's thumbnail through the CLI. Only fully
covered pixels count (alpha 255: neither the anti-aliased edge nor the ground shadow).

**Reference images** (``tests/look_references/<model>-<engine>.png``, 128 px). Compared after
compositing on mid grey, so a change in transparency or shadow counts too, by two standard
metrics implemented here with numpy: SSIM (Wang et al. 2004: 11-px Gaussian window, sigma 1.5,
K1 0.01, K2 0.03, the mean over R, G and B), which sees structure (edges, highlights, shading)
but hardly a uniform change of exposure or colour; and the mean CIE76 colour difference (ΔE*ab in
CIELAB, D65), which sees exactly that (2.3 is a just-noticeable difference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automat_pipeline.blender import blender_command  # noqa: E402
from automat_pipeline.settings import Settings  # noqa: E402

STEP = Settings().fixtures_dir / "step"
PART = STEP / "freecad-library" / "6201-2RS_Ball_Bearing.step"
SIZE, SAMPLES = 128, 16
ENGINES = ("workbench", "eevee", "cycles")
REFERENCES = REPO / "tests" / "look_references"
MIN_SSIM, MAX_DELTA_E = 0.95, 3.0


@dataclass(frozen=True)
class Looks:
    """Bounds on a material's covered pixels: luminance (Rec. 709 weights, 0-255) and colour."""

    mean: tuple[float, float]  # mean luminance, at least and at most
    p10: float = 0.0  # 10th percentile at least
    dark: float = 1.0  # share under 40 at most
    p90: float = 255.0  # 90th percentile at most
    colour: str = "neutral"  # neutral | warm | magenta

    def problems(self, stats: dict) -> list[str]:
        found = []
        if not self.mean[0] <= stats["mean"] <= self.mean[1]:
            found.append(f"mean luminance {stats['mean']} outside {self.mean}")
        if stats["p10"] < self.p10:
            found.append(f"10th percentile {stats['p10']} < {self.p10}")
        if stats["dark"] > self.dark:
            found.append(f"{stats['dark']:.0%} of pixels under 40 > {self.dark:.0%}")
        if stats["p90"] > self.p90:
            found.append(f"90th percentile {stats['p90']} > {self.p90}")
        r, g, b = stats["rgb"]
        if self.colour == "neutral" and max(r, g, b) - min(r, g, b) > 15:
            found.append(f"not neutral grey: mean RGB {stats['rgb']}")
        if self.colour == "warm" and not (r >= g >= b and r - b >= 35):
            found.append(f"not a warm metal (R >= G >= B, R - B >= 35): mean RGB {stats['rgb']}")
        if self.colour == "magenta" and not (min(r, b) >= 120 and g <= min(r, b) / 2):
            found.append(f"not magenta: mean RGB {stats['rgb']}")
        return found


# What each shipped material must look like, in every engine:
LOOKS = {
    # The bar for bare steel (light, not grey-black: faces toward the camera must not
    # mirror a dark room), and at most 200 so it is not blown out to white.
    "SCHAEFFLER_010101_Steel-Bare": Looks(mean=(110, 200), p10=45, dark=0.10),
    # Polished steel mirrors more sharply, but the same room: the same bar.
    "SCHAEFFLER_010102_Steel-Polished": Looks(mean=(110, 210), p10=45, dark=0.10),
    # Brass: as light as steel, and warm: red over green over blue, red clearly above blue.
    "SCHAEFFLER_020201_Brass-Cage": Looks(mean=(100, 200), p10=45, dark=0.10, colour="warm"),
    # Black glass-fibre polyamide (base colour 0.05): dark grey, neither black nor mid grey.
    "SCHAEFFLER_030301_Polyamide-Cage": Looks(mean=(25, 95)),
    # NBR rubber (0.02, rough 0.85): the darkest material, matte: no bright highlights.
    "SCHAEFFLER_040401_Rubber-Seal": Looks(mean=(12, 60), p90=100),
    # The fallback must be impossible to miss: clearly magenta in every engine.
    "SCHAEFFLER_059999_FailedMaterial": Looks(mean=(40, 170), colour="magenta"),
}


def stats(png: Path) -> dict:
    """Luminance statistics of the fully covered pixels of an RGBA render."""
    rgba = np.asarray(Image.open(png).convert("RGBA")).astype(float)
    covered = rgba[..., 3] == 255
    rgb = rgba[..., :3][covered]
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722])
    return {
        "covered": round(float(covered.mean()), 3),
        "mean": round(float(luminance.mean()), 1),
        "p10": round(float(np.percentile(luminance, 10)), 1),
        "p90": round(float(np.percentile(luminance, 90)), 1),
        "dark": round(float((luminance < 40).mean()), 3),
        "rgb": [round(float(c)) for c in rgb.mean(axis=0)],
    }


def material_glbs(folder: Path) -> dict[str, Path]:
    """The simple part's production GLB carrying each shipped library material (the catalogue
    assigns it to the part), as the CAD stage writes it."""
    from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver
    from automat_pipeline.opencascade import convert_step

    library = {m.name: m for m in LIBRARY}
    glbs = {}
    for name in LOOKS:
        glbs[name] = folder / f"{name}.glb"
        resolver = MaterialResolver(library, ALIASES, {"Body": name})
        convert_step(PART, folder / "viewer.glb", resolver=resolver, production_path=glbs[name])
    return glbs


def render_thumbnail(glb: Path, output: Path, engine: str, tenant: str, env: dict, *extra: str) -> dict:
    """``automat render thumbnail --tenant``, as an operator runs it; Blender's result."""
    done = subprocess.run(
        [sys.executable, "-m", "automat_pipeline.cli", "render", "thumbnail", str(glb), "-o", str(output)]
        + ["--tenant", tenant, "--engine", engine, "--size", str(SIZE), "--samples", str(SAMPLES), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


# Reference models: (name, STEP file or a generated bearing, part -> material as a catalogue assigns)
MODELS = {
    "bearing-6204": (None, {"Cage": "SCHAEFFLER_020201_Brass-Cage"}),  # rings, balls, brass cage
    "as1": (
        STEP / "occt-import-js" / "as1-oc-214.stp",
        {"nut_1": "SCHAEFFLER_010102_Steel-Polished", "rod_1": "SCHAEFFLER_030301_Polyamide-Cage"},
    ),  # the rest falls back to magenta
    "6201-2RS": (PART, {"Body": "SCHAEFFLER_040401_Rubber-Seal"}),
}


def reference_glbs(folder: Path) -> dict[str, Path]:
    from automat_pipeline.bearings import CATALOGUE, write_step
    from automat_pipeline.materials import ALIASES, LIBRARY, MaterialResolver
    from automat_pipeline.opencascade import convert_step

    glbs = {}
    for name, (step, assigned) in MODELS.items():
        step = step or write_step(CATALOGUE[0], folder / f"{name}.step")
        glbs[name] = folder / f"{name}.glb"
        resolver = MaterialResolver({m.name: m for m in LIBRARY}, ALIASES, assigned)
        convert_step(step, folder / "viewer.glb", resolver=resolver, production_path=glbs[name])
    return glbs


def render_references(folder: Path) -> dict[str, Path]:
    """Every model in every engine as the shipped thumbnail look at 128 px, in one warm Blender
    process (``render.py --batch``); the PNG of each ``<model>-<engine>``."""
    from automat_pipeline.blender import render_args, run_blender
    from automat_pipeline.materials import FALLBACK, LIBRARY, for_blender
    from automat_pipeline.output_types import OutputType

    library = folder / "library.json"
    library.write_text(json.dumps(for_blender({m.name: m for m in LIBRARY}, FALLBACK)))
    jobs, outputs = [], {}
    for model, glb in reference_glbs(folder).items():
        for engine in ENGINES:
            kind = OutputType(name="look", kind="thumbnail", engine=engine, resolution=SIZE, samples=SAMPLES)
            outputs[f"{model}-{engine}"] = folder / f"{model}-{engine}.png"
            jobs.append(render_args(glb, outputs[f"{model}-{engine}"], kind, library))
    (folder / "jobs.json").write_text(json.dumps(jobs))
    settings = Settings()
    results = run_blender(
        blender_command(settings.blender, str(settings.blender_scripts), ["--batch", str(folder / "jobs.json")]),
        timeout=900,
    )
    failed = [r for r in results if "error" in r]
    assert not failed, failed
    return outputs


def on_grey(png: Path) -> np.ndarray:
    """The render composited on mid grey, as float RGB 0-255."""
    rgba = np.asarray(Image.open(png).convert("RGBA")).astype(float)
    alpha = rgba[..., 3:] / 255
    return rgba[..., :3] * alpha + 128 * (1 - alpha)


def _gaussian_blur(image: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, rows)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the colour channels (Wang, Bovik, Sheikh, Simoncelli 2004), on 0-255 images."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    scores = []
    for channel in range(a.shape[2]):
        x, y = a[..., channel], b[..., channel]
        mx, my = _gaussian_blur(x), _gaussian_blur(y)
        vx, vy = _gaussian_blur(x * x) - mx**2, _gaussian_blur(y * y) - my**2
        cxy = _gaussian_blur(x * y) - mx * my
        scores.append(((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())
    return float(np.mean(scores))


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB 0-255."""
    c = rgb / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIE76 colour difference."""
    return np.linalg.norm(lab(a) - lab(b), axis=-1)


def compare(reference: Path, actual: Path, diff: Path) -> dict:
    """SSIM and mean ΔE of ``actual`` against ``reference``; writes ``diff`` (reference, actual and
    the ΔE map, red where they differ by 10 or more) when they differ beyond the tolerance."""
    a, b = on_grey(reference), on_grey(actual)
    if a.shape != b.shape:
        return {"ssim": 0.0, "delta_e": float("inf"), "passed": False, "reason": f"size {b.shape} != {a.shape}"}
    difference = delta_e(a, b)
    result = {"ssim": round(ssim(a, b), 4), "delta_e": round(float(difference.mean()), 2)}
    result["passed"] = result["ssim"] >= MIN_SSIM and result["delta_e"] <= MAX_DELTA_E
    if not result["passed"]:
        heat = np.clip(difference / 10, 0, 1)[..., None] * np.array([255.0, 0.0, 0.0])
        Image.fromarray(np.concatenate([a, b, heat], axis=1).astype(np.uint8)).save(diff)
    return result


if __name__ == "__main__":
    if sys.argv[1:] != ["regenerate"]:
        sys.exit(__doc__)
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        REFERENCES.mkdir(exist_ok=True)
        for case, png in render_references(Path(work)).items():
            shutil.copyfile(png, REFERENCES / f"{case}.png")
            print(REFERENCES / f"{case}.png", os.path.getsize(png), "bytes")
