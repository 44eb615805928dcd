"""Orders that tell the truth: outputs of the line's own run, states through cancel and reject, the
order board, numbers under concurrency, the history of a rejection, and the order's ZIP."""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from conftest import PASSWORD, as_role, login
from openpyxl import Workbook
from sqlalchemy import select, text

from automat_pipeline.api.launcher import launch_lines
from automat_pipeline.api.order_service import counts, order_state
from automat_pipeline.catalog_import import attach_report, import_workbook
from automat_pipeline.db import repository
from automat_pipeline.db.database import session
from automat_pipeline.db.models import CatalogImport, Order, Product


def draft(api, headers, world, *output_types: str) -> dict:
    order = api.post("/orders", headers=headers).json()
    for output_type in output_types:
        line = {"product_id": world["products"]["6204-2RS"], "output_type": output_type}
        order = api.post(f"/orders/{order['id']}/lines", headers=headers, json=line).json()
    return order


def finish(env, line_id: int, run_id: str, state: str, **values) -> None:
    """What the order_lines sensor records when the line's run ends."""
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        s.execute(
            text("UPDATE order_lines SET run_id = :r, state = 'queued' WHERE id = :l"), {"r": run_id, "l": line_id}
        )
        outputs = repository.runs_outputs(s, [run_id])[run_id]
        repository.record_line_outcome(s, line_id, run_id, state=state, outputs=outputs, **values)


def test_a_line_shows_only_what_its_own_run_made(api, world, env):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # an older order's still, and the .blend
        for asset in ("still", "blend_export"):
            repository.record_media(
                s,
                world["tenants"]["acme"],
                world["products"]["6204-2RS"],
                asset,
                "still-web",
                "completed",
                path="/x",
                run_id="older-run",
            )
    client = login(api, "client@acme.example")
    order = draft(api, client, world, "still-web")
    submitted = api.post(f"/orders/{order['id']}/submit", headers=client).json()
    [line] = submitted["lines"]
    assert (line["state"], line["outputs"]) == ("pending", [])


def test_states_stay_true_through_cancel_and_reject(api, world, env):
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    empty = api.post("/orders", headers=client).json()
    rejected = api.post(f"/orders/{empty['id']}/reject", headers=pm, json={"reason": "nothing in it"}).json()
    assert (rejected["status"], rejected["state"]) == ("rejected", "rejected")  # not "completed"
    order = draft(api, client, world, "thumbnail", "still-web")
    api.post(f"/orders/{order['id']}/submit", headers=client)
    cancelled = api.post(f"/orders/{order['id']}/cancel", headers=client).json()
    assert [(line["state"], line["error_class"]) for line in cancelled["lines"]] == [("cancelled", "cancelled")] * 2
    assert (cancelled["state"], cancelled["counts"]["cancelled"]) == ("cancelled", 2)


def test_an_order_with_some_failures_says_so():
    assert order_state("submitted", counts({"completed": 47, "failed": 3})) == "completed_with_failures"
    assert order_state("submitted", counts({"completed": 50})) == "completed"
    assert order_state("submitted", counts({"failed": 2, "cancelled": 1})) == "failed"
    assert order_state("submitted", counts({"completed": 1, "running": 1, "pending": 1})) == "running"


def test_the_document_gives_each_failure_its_class_and_the_order_its_counts(api, world, env):
    client = login(api, "client@acme.example")
    order = draft(api, client, world, "thumbnail", "still-web")
    submitted = api.post(f"/orders/{order['id']}/submit", headers=client).json()
    first, second = (line["id"] for line in submitted["lines"])
    finish(env, first, "run-a", "completed")
    finish(env, second, "run-b", "failed", error_class="timeout", reason="Blender did not finish in 300 s")
    document = api.get(f"/orders/{order['id']}", headers=client).json()
    assert document["state"] == "completed_with_failures"
    assert document["counts"] | {"total": 2} == {
        "total": 2,
        "pending": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    failed = next(line for line in document["lines"] if line["id"] == second)
    assert (failed["error_class"], failed["reason"]) == ("timeout", "Blender did not finish in 300 s")
    with session(env["AUTOMAT_DATABASE_URL"]) as s:  # every failed line of the tenant: one indexed query
        indexes = s.execute(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'order_lines'")).scalars().all()
    # the index, not the plan: on a tiny table the planner may pick any index, or none
    assert any(d.endswith("(tenant_id, state)") for d in indexes), indexes


def test_a_line_that_can_never_launch_fails_and_the_others_go_on(api, world, env):
    ta = as_role(api, world, "ta")
    workflow = {"version": 1, "nodes": [{"id": "t", "step": "thumbnail"}]}
    assert api.put("/workflows/quick", headers=ta, json=workflow).status_code == 200
    order = api.post("/orders", headers=ta, json={"workflow": "quick"}).json()
    api.post(
        f"/orders/{order['id']}/lines",
        headers=ta,
        json={"product_id": world["products"]["6204-2RS"], "output_type": "thumbnail"},
    )
    api.post(f"/orders/{order['id']}/submit", headers=ta)  # Dagster is down: pending
    assert api.delete("/workflows/quick", headers=ta).status_code == 204
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        launch_lines(s, api.app.state.dagster, s.get(Order, order["id"]))  # what the launch loop does
    [line] = api.get(f"/orders/{order['id']}", headers=ta).json()["lines"]
    assert (line["state"], line["error_class"]) == ("failed", "launch_refused") and "quick" in line["reason"]


def test_a_resubmitted_order_keeps_its_rejection_in_the_history(api, world):
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    order = draft(api, client, world, "thumbnail")
    api.post(f"/orders/{order['id']}/submit", headers=client)
    api.post(f"/orders/{order['id']}/reject", headers=pm, json={"reason": "wrong bearing"})
    again = api.post(f"/orders/{order['id']}/resubmit", headers=client).json()
    assert (again["status"], again["reject_reason"], again["rejected_at"]) == ("draft", None, None)
    assert [(h["event"], h["reason"]) for h in again["history"]] == [
        ("submitted", None),
        ("rejected", "wrong bearing"),
        ("resubmitted", None),
    ]
    sent = {"line": order["lines"][0]["id"], "product_id": world["products"]["6204-2RS"], "output_type": "thumbnail"}
    assert again["history"][0]["lines"] == [sent]


def test_one_line_can_be_cancelled(api, world):
    client = login(api, "client@acme.example")
    order = draft(api, client, world, "thumbnail", "still-web")
    api.post(f"/orders/{order['id']}/submit", headers=client)
    first = order["lines"][0]["id"]
    after = api.post(f"/orders/{order['id']}/lines/{first}/cancel", headers=client).json()
    assert [line["state"] for line in after["lines"]] == ["cancelled", "pending"] and after["status"] == "submitted"
    assert api.post(f"/orders/{order['id']}/lines/{first}/cancel", headers=client).status_code == 409


def test_the_board_filters_pages_and_counts(api, world):
    client, other, pm = login(api, "client@acme.example"), login(api, "client2@acme.example"), as_role(api, world, "pm")
    mine = [draft(api, client, world, "thumbnail") for _ in range(3)]
    api.post(f"/orders/{mine[0]['id']}/submit", headers=client)
    theirs = draft(api, other, world)
    api.post(f"/orders/{theirs['id']}/reject", headers=pm, json={"reason": "empty"})
    board = api.get("/orders", headers=pm, params={"limit": 2}).json()
    assert [o["id"] for o in board["items"]] == [theirs["id"], mine[2]["id"]] and board["next_cursor"]
    rest = api.get("/orders", headers=pm, params={"limit": 2, "cursor": board["next_cursor"]}).json()
    assert [o["id"] for o in rest["items"]] == [mine[1]["id"], mine[0]["id"]] and rest["next_cursor"] is None
    assert board["counts"] == {"draft": 2, "submitted": 1, "cancelled": 0, "rejected": 1}
    several = api.get("/orders", headers=pm, params=[("status", "submitted"), ("status", "rejected")]).json()
    assert {o["status"] for o in several["items"]} == {"submitted", "rejected"} and len(several["items"]) == 2
    numbered = api.get("/orders", headers=pm, params={"number": mine[1]["number"]}).json()["items"]
    assert [o["id"] for o in numbered] == [mine[1]["id"]]
    by_creator = api.get("/orders", headers=pm, params={"created_by": theirs["created_by"]}).json()
    assert [o["id"] for o in by_creator["items"]] == [theirs["id"]]
    own = api.get("/orders", headers=client).json()  # a client's board is their own orders
    assert {o["id"] for o in own["items"]} == {o["id"] for o in mine}
    assert api.get("/orders", headers=client, params={"created_by": theirs["created_by"]}).status_code == 403
    assert mine[0]["number"].startswith("ORD-20") and len({o["number"] for o in mine}) == 3


def test_the_board_counts_each_orders_lines_as_its_document_does(api, world, env):
    """The board counts its page's lines by state in the database; each order's counts and state
    are its document's, for lines in every state and for an order without lines; the counts per
    status follow the filters but the status one, and a filtered board pages on."""
    client, pm = login(api, "client@acme.example"), as_role(api, world, "pm")
    empty = api.post("/orders", headers=client).json()
    states = [
        ["completed", "completed", "completed", "failed"],
        ["pending", "queued", "running", "cancelled", "completed"],
        ["failed", "cancelled"],
    ]
    orders = [api.post("/orders", headers=client).json() for _ in states]
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        acme = world["tenants"]["acme"]
        for order, order_states in zip(orders, states, strict=True):
            for n, state in enumerate(order_states):
                product = Product(tenant_id=acme, pim_id=f"{order['number']}-{n}", key=f"k{order['id']}-{n}", name="x")
                s.add(product)
                s.flush()
                s.execute(
                    text(
                        "INSERT INTO order_lines (tenant_id, order_id, product_id, output_type, state, outputs) "
                        "VALUES (:t, :o, :p, 'thumbnail', :s, '[]')"
                    ),
                    {"t": acme, "o": order["id"], "p": product.id, "s": state},
                )
            s.execute(text("UPDATE orders SET status = 'submitted' WHERE id = :o"), {"o": order["id"]})
    board = {o["id"]: o for o in api.get("/orders", headers=pm).json()["items"]}
    for order in [empty, *orders]:
        document = api.get(f"/orders/{order['id']}", headers=pm).json()
        assert (board[order["id"]]["counts"], board[order["id"]]["state"]) == (document["counts"], document["state"])
    assert [board[o["id"]]["state"] for o in [empty, *orders]] == [
        "draft",
        "completed_with_failures",
        "running",
        "failed",
    ]
    assert board[orders[1]["id"]]["counts"] == {
        "total": 5,
        "pending": 1,
        "queued": 1,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 1,
    }
    assert board[empty["id"]]["counts"]["total"] == 0
    numbered = api.get("/orders", headers=pm, params={"number": orders[2]["number"]}).json()
    assert numbered["counts"] == {"draft": 0, "submitted": 1, "cancelled": 0, "rejected": 0}
    submitted, cursor = [], None
    while True:  # one order a page, the status filter kept from page to page
        params = {"status": "submitted", "limit": 1} | ({"cursor": cursor} if cursor else {})
        page = api.get("/orders", headers=pm, params=params).json()
        assert page["counts"] == {"draft": 1, "submitted": 3, "cancelled": 0, "rejected": 0}
        submitted += [o["id"] for o in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert submitted == [o["id"] for o in reversed(orders)]


def test_a_global_admin_naming_a_tenant_that_does_not_exist_gets_404(api, world):
    ga = login(api, "ga@acme.example")
    refused = api.get("/orders", headers=ga | {"X-Tenant-Id": "99999"})
    assert (refused.status_code, refused.json()["detail"]) == (404, "no tenant 99999")
    assert api.get("/orders", headers=ga | {"X-Tenant-Id": str(world["tenants"]["acme"])}).status_code == 200


def test_order_numbers_stay_unique_under_concurrent_orders(live, world):
    token = httpx.post(f"{live}/auth/login", json={"email": "client@acme.example", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with ThreadPoolExecutor(8) as pool:
        orders = list(pool.map(lambda _: httpx.post(f"{live}/orders", headers=headers).json(), range(24)))
    numbers = sorted(o["number"] for o in orders)
    assert len(set(numbers)) == 24 and numbers[-1].endswith("000024")


def test_an_order_downloads_as_one_zip_named_by_product_and_output_type(api, world, env):
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "6204-2RS"
    folder.mkdir(parents=True)
    (folder / "thumbnail.png").write_bytes(b"\x89PNG thumbnail")
    (folder / "still-still-web.png").write_bytes(b"\x89PNG still")
    client = login(api, "client@acme.example")
    order = draft(api, client, world, "thumbnail", "still-web")
    submitted = api.post(f"/orders/{order['id']}/submit", headers=client).json()
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        for asset, output_type, file, run in (
            ("thumbnail", "thumbnail", "thumbnail.png", "run-t"),
            ("still", "still-web", "still-still-web.png", "run-s"),
        ):
            repository.record_media(
                s,
                world["tenants"]["acme"],
                world["products"]["6204-2RS"],
                asset,
                output_type,
                "completed",
                path=str(folder / file),
                run_id=run,
            )
    first, second = (line["id"] for line in submitted["lines"])
    finish(env, first, "run-t", "completed")
    finish(env, second, "run-s", "completed")
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # a later render replaces the still
        s.execute(text("UPDATE media_assets SET run_id = 'later' WHERE run_id = 'run-s'"))
    response = api.get(f"/orders/{order['id']}/download", headers=client)
    assert response.status_code == 200 and order["number"] in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["6204-2RS/thumbnail-thumbnail.png", "MISSING.txt"]
    assert archive.read("6204-2RS/thumbnail-thumbnail.png") == b"\x89PNG thumbnail"
    assert b"still-web-still: replaced by a later render" in archive.read("MISSING.txt")
    assert api.get(f"/orders/{order['id']}/download", headers=login(api, "client@beta.example")).status_code == 404
    with session(env["AUTOMAT_DATABASE_URL"]) as s:
        assert s.scalar(select(Order.number).where(Order.id == order["id"])) == order["number"]


def test_glbs_are_media_and_orderable(api, world, env):
    folder = Path(env["AUTOMAT_MEDIA_DIR"]) / "acme" / "6204-2RS"
    folder.mkdir(parents=True)
    (folder / "production.glb").write_bytes(b"glTF production")
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        repository.record_media(
            s,
            world["tenants"]["acme"],
            world["products"]["6204-2RS"],
            "glb_production",
            "standard",
            "completed",
            path=str(folder / "production.glb"),
            run_id="conversion",
        )
        s.execute(text('UPDATE tenants SET settings = \'{"render_engines_allowed": ["workbench"]}\''))
    client = login(api, "client@acme.example")
    listed = api.get("/media", headers=client, params={"asset": "glb_production"}).json()["items"]
    assert [(m["asset"], m["output_type"]) for m in listed] == [("glb_production", "standard")]
    assert api.get(f"/media/{listed[0]['id']}/file", headers=client).content == b"glTF production"
    types = {t["name"]: t for t in api.get("/output-types", headers=client).json()}
    assert (types["glb"]["kind"], types["glb-fine"]["quality"]) == ("glb", "fine")
    order = draft(api, client, world, "glb-fine")
    submitted = api.post(f"/orders/{order['id']}/submit", headers=client)  # no engine: not refused
    assert submitted.status_code == 200 and submitted.json()["lines"][0]["state"] == "pending"


def test_an_upload_tells_its_import_and_its_conversions(api, world, env, tmp_path):
    client = login(api, "client@acme.example")
    book = Workbook()
    for row in (["PIM-ID", "Name", "CAD-Datei"], ["N-1", "New", "n1.stp"], ["N-2", None, None], [None, "no id", None]):
        book.active.append(row)
    book.save(tmp_path / "list.xlsx")
    upload = api.post(
        "/uploads", headers=client, files={"file": ("list.xlsx", (tmp_path / "list.xlsx").read_bytes())}
    ).json()
    assert (upload["status"], upload["catalog_import"]) == ("received", None)
    inbox = Path(env["AUTOMAT_UPLOADS_DIR"]) / "acme"
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # what the pipeline's import does
        tenant = repository.tenant(s, "acme", create=False)
        result = import_workbook(s, tenant, inbox / "list.xlsx", "sensor")
        attach_report(
            s, s.get(CatalogImport, result.import_id), inbox / "list.xlsx", Path(env["AUTOMAT_MEDIA_DIR"]) / "r"
        )
    seen = api.get(f"/uploads/{upload['id']}", headers=client, params={"rejected_limit": 1}).json()
    assert seen["status"] == "ok_with_rejections"
    assert (seen["catalog_import"]["counts"]["created"], seen["catalog_import"]["rejected_total"]) == (1, 2)
    [first] = seen["catalog_import"]["rejected"]
    assert first["row"] == 3 and "name" in first["reason"]
    second = api.get(f"/uploads/{upload['id']}", headers=client, params={"rejected_offset": 1}).json()
    assert [r["row"] for r in second["catalog_import"]["rejected"]] == [4]
    report = api.get(seen["catalog_import"]["report"], headers=client)
    assert report.status_code == 200 and report.content.startswith(b"PK")

    step = b"ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n"
    stored = api.post("/uploads", headers=client, files={"file": ("n1.stp", step)}).json()
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():  # step_file and the conversion, as they record it
        product = s.scalar(select(Product).where(Product.pim_id == "N-1"))
        repository.record_file(s, product.tenant_id, inbox / "n1.stp", "step", stored["sha256"], product_id=product.id)
        repository.record_media(
            s,
            product.tenant_id,
            product.id,
            "glb_production",
            "standard",
            "failed",
            error_class="no_geometry",
            reason="n1.stp contains no surfaces",
        )
    converted = api.get(f"/uploads/{stored['id']}", headers=client).json()
    assert converted["status"] == "ok"
    assert [(c["pim_id"], c["status"], c["error_class"]) for c in converted["conversions"]] == [
        ("N-1", "failed", "no_geometry")
    ]


def test_analytics_count_what_happened(api, world, env):
    with session(env["AUTOMAT_DATABASE_URL"]) as s, s.begin():
        tenant, product = world["tenants"]["acme"], world["products"]["6204-2RS"]
        s.execute(
            text(
                "INSERT INTO orders (tenant_id, number, status, submitted_at) VALUES "
                "(:t, 'ORD-A', 'submitted', '2026-11-02 10:00+00'), (:t, 'ORD-B', 'submitted', '2026-11-03 09:00+00'), "
                "(:t, 'ORD-C', 'draft', NULL)"
            ),
            {"t": tenant},
        )
        orders = s.scalars(text("SELECT id FROM orders ORDER BY id")).all()
        for n, (state, seconds, error) in enumerate(
            [
                ("completed", 10, None),
                ("completed", 20, None),
                ("completed", 30, None),
                ("failed", 5, "timeout"),
                ("failed", 6, "timeout"),
                ("failed", 7, "damaged_geometry"),
            ]
        ):
            s.execute(
                text(
                    "INSERT INTO order_lines (tenant_id, order_id, product_id, output_type, state, seconds, "
                    "error_class, ended_at) VALUES (:t, :o, :p, :ot, :s, :sec, :e, '2026-11-02 12:00+00')"
                ),
                {
                    "t": tenant,
                    "o": orders[n // 2],
                    "p": product,
                    "ot": f"type-{n % 2}",
                    "s": state,
                    "sec": seconds,
                    "e": error,
                },
            )
        for n, backend in enumerate(["OPTIX", "CPU", "CPU", "CPU"]):
            repository.record_media(
                s,
                tenant,
                product,
                "still",
                f"s{n}",
                "completed",
                details={"render_seconds": n + 1.0, "backend": backend},
            )
        s.execute(text("UPDATE media_assets SET updated_at = '2026-11-02 12:00+00'"))
    figures = api.get(
        "/analytics",
        headers=as_role(api, world, "pm"),
        params={"since": "2026-11-01T00:00:00Z", "until": "2026-11-08T00:00:00Z"},
    ).json()
    day = next(p for p in figures["periods"] if p["start"].startswith("2026-11-02"))
    assert (day["orders"], day["lines"], day["succeeded"], day["failed"], day["success_rate"]) == (1, 6, 3, 3, 0.5)
    assert {t["output_type"]: t["lines"] for t in day["by_output_type"]} == {"type-0": 3, "type-1": 3}
    assert [p["orders"] for p in figures["periods"] if p["start"].startswith("2026-11-03")] == [1]
    assert figures["failure_classes"] == {"timeout": 2, "damaged_geometry": 1}
    assert (figures["devices"], figures["gpu_share"]) == ({"gpu": 1, "cpu": 3}, 0.25)
    assert figures["render_seconds"]["p50"] == 2.5 and figures["lines_per_hour"] == round(6 / 168, 4)
    weekly = api.get(
        "/analytics",
        headers=as_role(api, world, "pm"),
        params={"period": "week", "since": "2026-11-01T00:00:00Z", "until": "2026-11-08T00:00:00Z"},
    ).json()
    assert sum(p["orders"] for p in weekly["periods"]) == 2
    assert api.get("/analytics", headers=login(api, "client@acme.example")).status_code == 403
