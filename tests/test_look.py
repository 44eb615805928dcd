"""The studio look, checked by pixels: every shipped library material in every engine, rendered for
a tenant through ``automat render thumbnail``, and reference images of a few models per engine
(``tests/look.py`` holds the bounds, the metrics and the command that regenerates the references)."""

import os

import numpy as np
import pytest
from conftest import STEP_FIXTURES  # noqa: F401 (the fixture check: these tests need the STEP fixtures)
from look import ENGINES, LOOKS, MAX_DELTA_E, MIN_SSIM, REFERENCES, compare, material_glbs, render_references
from look import render_thumbnail as cli_thumbnail
from look import stats as pixel_stats
from PIL import Image

from automat_pipeline.db import repository
from automat_pipeline.db.database import session

TENANT = "look"


@pytest.fixture(scope="module")
def studio(domain_database, tmp_path_factory):
    """A tenant with the shipped library, the simple part in each library material, and a render
    function that caches each (engine, material, flags) thumbnail for the module."""
    with session(domain_database) as s, s.begin():
        repository.tenant(s, TENANT)
    folder = tmp_path_factory.mktemp("look")
    glbs = material_glbs(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMAT_", "DAGSTER_"))}
    env |= {"AUTOMAT_DATABASE_URL": domain_database, "AUTOMAT_HOME": str(folder / "home")}
    rendered: dict[tuple, tuple] = {}

    def render(engine: str, material: str, *flags: str):
        key = (engine, material, *flags)
        if key not in rendered:
            png = folder / f"{engine}-{material}{''.join(flags)}.png"
            rendered[key] = png, cli_thumbnail(glbs[material], png, engine, TENANT, env, *flags)
        return rendered[key]

    return render


@pytest.mark.slow
@pytest.mark.parametrize("material", sorted(LOOKS))
@pytest.mark.parametrize("engine", ENGINES)
def test_library_material_looks_right(studio, engine, material):
    png, result = studio(engine, material)
    assert result["lighting"].startswith("studio (studio.exr") and result["materials"] == {material: 1}
    measured = pixel_stats(png)
    assert measured["covered"] > 0.15, measured  # the part fills the frame
    problems = LOOKS[material].problems(measured)
    assert not problems, f"{engine} {material}: {'; '.join(problems)} ({measured})"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["cycles", "eevee"])
def test_ground_shadow_composites_on_a_transparent_background(studio, engine):
    """Under the part, the shadow is black and partly transparent; without it, the ground is clear."""
    steel = "SCHAEFFLER_010101_Steel-Bare"
    with_shadow = np.asarray(Image.open(studio(engine, steel)[0]))
    without = np.asarray(Image.open(studio(engine, steel, "--no-ground-shadow")[0]))
    covered = without[..., 3] == 255
    rows = np.nonzero(covered.any(axis=1))[0]
    columns = np.nonzero(covered.any(axis=0))[0]
    below = (slice(rows.max() + 3, rows.max() + 8), slice(columns.min() + 10, columns.max() - 10))  # past the edge
    shadow = with_shadow[below]
    assert 20 <= shadow[..., 3].mean() <= 230, shadow[..., 3]  # a soft shadow, neither absent nor opaque
    assert shadow[..., :3][shadow[..., 3] > 20].max() < 40  # and black: it darkens what it is laid on
    assert without[below][..., 3].max() == 0  # no ground, no shadow
    assert with_shadow[0, 0, 3] == 0  # the background stays transparent


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    return render_references(tmp_path_factory.mktemp("references"))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(p.stem for p in REFERENCES.glob("*.png")))
def test_render_matches_its_reference_image(references, case, tmp_path):
    diff = tmp_path / f"{case}-diff.png"
    result = compare(REFERENCES / f"{case}.png", references[case], diff)
    assert result["passed"], (
        f"{case} looks different from tests/look_references/{case}.png: SSIM {result['ssim']} (at least {MIN_SSIM}),"
        f" mean ΔE {result['delta_e']} (at most {MAX_DELTA_E}); reference | render | ΔE: {diff}. If the new look"
        " is meant, regenerate: .venv/bin/python tests/look.py regenerate"
    )
    assert not diff.exists()


def test_every_engine_and_model_has_a_reference():
    assert sorted(p.stem for p in REFERENCES.glob("*.png")) == sorted(
        f"{model}-{engine}" for model in ("6201-2RS", "as1", "bearing-6204") for engine in ENGINES
    )


def test_comparison_catches_a_darker_look_and_saves_the_diff(tmp_path):
    """A regression in lighting (a quarter darker) fails, and the diff image is written."""
    reference = REFERENCES / "bearing-6204-cycles.png"
    rgba = np.asarray(Image.open(reference)).astype(float)
    rgba[..., :3] *= 0.75
    Image.fromarray(rgba.astype(np.uint8)).save(tmp_path / "darker.png")
    result = compare(reference, tmp_path / "darker.png", tmp_path / "diff.png")
    assert not result["passed"] and result["delta_e"] > MAX_DELTA_E
    assert Image.open(tmp_path / "diff.png").size == (3 * 128, 128)
    same = compare(reference, reference, tmp_path / "same.png")
    assert same == {"ssim": 1.0, "delta_e": 0.0, "passed": True} and not (tmp_path / "same.png").exists()
