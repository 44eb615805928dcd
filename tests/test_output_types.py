import pytest

from automat_pipeline.errors import AutomatError
from automat_pipeline.output_types import DEFAULTS, OutputType, merged, parse


def test_every_setting_has_a_help_text():
    for name, field in OutputType.model_fields.items():
        assert field.description and len(field.description) > 10, name


def test_tenant_types_override_defaults_by_name_and_add_their_own():
    own = [
        parse("thumbnail", {"kind": "thumbnail", "resolution": 128}),
        parse("print", {"kind": "still", "resolution": 4096, "samples": 256}),
    ]
    types = {t.name: t for t in merged(own)}
    assert types["thumbnail"].resolution == 128 and types["print"].samples == 256
    assert set(types) == {t.name for t in DEFAULTS} | {"print"}


@pytest.mark.parametrize(
    "settings,problem",
    [
        ({"kind": "still", "resolution": 10}, "resolution: Input should be greater than or equal to 16"),
        ({"kind": "poster"}, "kind: Input should be 'thumbnail', 'still', 'turntable' or 'glb'"),
        ({"kind": "still", "engine": "luxcore"}, "engine: Input should be 'cycles', 'eevee' or 'workbench'"),
        ({"kind": "still", "template": "../other/x.blend"}, "template: String should match pattern"),
        ({"kind": "still", "sampels": 64}, "sampels: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_name_the_field(settings, problem):
    with pytest.raises(AutomatError, match=problem) as error:
        parse("x", settings)
    assert error.value.error_class == "invalid_output_type"
