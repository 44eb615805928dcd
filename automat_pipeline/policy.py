"""A tenant's rules, in one place every path asks: the API's routes (orders, direct renders, workflow
runs, output types, settings, materials) and the pipeline's render steps (the upload sensor's
thumbnails included). A refusal is a classified error naming the rule.
"""

from __future__ import annotations

from automat_pipeline.errors import AutomatError
from automat_pipeline.output_types import RENDERED, STEP_OF_KIND, OutputType
from automat_pipeline.tenant_settings import TenantSettings


def engine_refusal(settings: TenantSettings, output_type: OutputType) -> str | None:
    """Why ``output_type`` may not render for this tenant (its engine is not allowed), if it may not."""
    if output_type.kind in RENDERED and output_type.engine not in settings.render_engines_allowed:
        allowed = ", ".join(settings.render_engines_allowed)
        return f"output type {output_type.name!r} renders with {output_type.engine}; this tenant allows {allowed}"
    return None


def check_engine(settings: TenantSettings, output_type: OutputType) -> None:
    refusal = engine_refusal(settings, output_type)
    if refusal:
        raise AutomatError("engine_not_allowed", refusal)


def check_size(settings: TenantSettings, count: int, what: str = "an order") -> None:
    """``count`` products or lines in one order or workflow run, at most the tenant's max_order_size."""
    if count > settings.max_order_size:
        raise AutomatError(
            "too_large", f"{count} lines in {what} exceed the tenant's max_order_size of {settings.max_order_size}"
        )


def check_fallback(settings: TenantSettings, library: set[str]) -> None:
    """The fallback material must be one the tenant's library holds (else every conversion would fail)."""
    if settings.fallback_material not in library:
        raise AutomatError(
            "unknown_material",
            f"fallback_material {settings.fallback_material!r} is not in the tenant's material library",
        )


def plan_output_types(selection: list[str], run_config: dict, types: list[OutputType]) -> list[OutputType]:
    """The output types a workflow run would make: those its steps' parameters name, else every one of
    each step's kind (the thumbnail step: the tenant's thumbnail type)."""
    chosen = []
    for output_type_kind, step in STEP_OF_KIND.items():
        if step not in selection:
            continue
        named = run_config.get("ops", {}).get(step, {}).get("config", {}).get("output_types") or []
        of_kind = [t for t in types if t.kind == output_type_kind]
        if output_type_kind == "thumbnail" and not named:
            named = ["thumbnail"] if any(t.name == "thumbnail" for t in of_kind) else [t.name for t in of_kind[:1]]
        chosen += [t for t in of_kind if not named or t.name in named]
    return chosen
