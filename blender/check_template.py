"""Check a tenant's template .blend without running anything in it: what it holds, and whether it may serve.

Run by Blender 5.0.1 (a binary or the ``bpy`` module), like ``render.py``:

    python check_template.py -- FILE [NAME]      (NAME: the template's name, default FILE's)
    blender -b --factory-startup --disable-autoexec --python check_template.py -- FILE [NAME]

Prints one line ``AUTOMAT_RESULT {json}``: ``valid`` (a .blend Blender reads), the Blender it was
saved with, scene, world, lights, cameras, meshes, render engine, the scripts it holds (none of
which ever runs), ``problems`` (``[class, reason]`` pairs: why it is refused) and ``warnings``.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # Blender's --python does not add it

import bpy  # noqa: E402

from automat_blender.template import open_template, problems  # noqa: E402


def check(path: str, name: str) -> dict:
    try:
        facts = open_template(path)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "Blender cannot read it"
        return {"valid": False, "problems": [["not_blend", f"{name} is not a .blend ({reason})"]]}
    bpy.context.evaluated_depsgraph_get()  # what a render evaluates (drivers included) runs here too
    warnings = []
    if facts["scripts"]:
        unique = list(dict.fromkeys(s["name"] for s in facts["scripts"]))  # a Freestyle module names its text
        names, count = ", ".join(unique[:5]) + (", …" if len(unique) > 5 else ""), len(unique)
        warnings.append(f"holds {count} script{'s' if count > 1 else ''} ({names}) that will never run")
    if facts["file_outputs"]:
        warnings.append(f"its compositor's File Output nodes ({', '.join(facts['file_outputs'])}) are removed")
    saved, running = tuple(map(int, facts["saved_with"].split("."))), bpy.app.version[:2]
    if saved > running:
        warnings.append(
            f"saved with Blender {facts['saved_with']}, newer than the render hosts' "
            f"{'.'.join(map(str, running))}: settings it added are lost"
        )
    return {
        "valid": True,
        "blender": bpy.app.version_string,
        **facts,
        "problems": [list(p) for p in problems(name, facts)],
        "warnings": warnings,
    }


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    if len(argv) not in (1, 2):
        print("error: invalid_arguments: check_template.py -- FILE [NAME]", file=sys.stderr)
        sys.exit(2)
    name = argv[1] if len(argv) == 2 else os.path.basename(argv[0])
    print("AUTOMAT_RESULT " + json.dumps(check(argv[0], name)), flush=True)


if __name__ == "__main__":
    main()
