"""What a person reads: the title and body of each notification, from its event.

Every notification says what happened in its first line (the title, an e-mail's subject): an
order's outcome in numbers, an import's counts, an alert's cause; the body adds the details (the
failed lines, the rejected rows' reasons) and a link.
"""

from __future__ import annotations

from dataclasses import dataclass

from automat_pipeline.notify.models import Event

MAX_LISTED = 20  # rejected rows listed in an import summary (the report has them all)


@dataclass(frozen=True)
class Message:
    kind: str
    title: str
    body: str
    data: dict


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def order_summary(event: Event, base_url: str) -> Message:
    """``ORD-2026-000042 finished: 47 of 50 succeeded, 3 failed (2 timeout, 1 damaged_geometry)``."""
    d = event.data
    order_id = int(event.subject.split(":")[1])
    verb = "was cancelled" if d["status"] == "cancelled" else "finished"
    if d["succeeded"] == d["total"]:
        outcome = f"all {d['total']} succeeded" if d["total"] > 1 else "its line succeeded"
    else:
        parts = [f"{d['succeeded']} of {d['total']} succeeded"]
        if d["failed"]:
            classes = ", ".join(f"{n} {error_class}" for error_class, n in d["failures"].items())
            parts.append(f"{d['failed']} failed ({classes})")
        if d["cancelled"]:
            parts.append(f"{d['cancelled']} cancelled")
        outcome = ", ".join(parts)
    lines = [
        f"- line {f['line']}: {f['pim_id']} {f['output_type']}: {f['error_class']}: {f['reason']}"
        for f in d["failed_lines"]
    ]
    if d["failed"] > len(d["failed_lines"]):
        lines.append(f"- and {d['failed'] - len(d['failed_lines'])} more failed lines")
    body = "\n".join((["Failed lines:", *lines, ""] if lines else []) + [f"The order: {base_url}/orders/{order_id}"])
    return Message("order_summary", f"{d['number']} {verb}: {outcome}", body, {"order_id": order_id} | d)


def order_rejected(event: Event, base_url: str) -> Message:
    order_id = int(event.subject.split(":")[1])
    d = event.data
    return Message(
        "order_rejected",
        f"{d['number']} was rejected: {d['reason']}",
        f"Edit it and resubmit it: {base_url}/orders/{order_id}",
        {"order_id": order_id, "number": d["number"], "reason": d["reason"]},
    )


def order_resubmitted(event: Event, base_url: str) -> Message:
    order_id = int(event.subject.split(":")[1])
    d = event.data
    return Message(
        "order_resubmitted",
        f"{d['number']} was resubmitted after its rejection",
        f"It is a draft again; its history keeps the rejection: {base_url}/orders/{order_id}",
        {"order_id": order_id, "number": d["number"]},
    )


def import_summary(event: Event, base_url: str) -> Message:
    """``products.xlsx imported: 120 rows, 3 created, 5 updated, 110 unchanged, 0 deactivated, 2 rejected``."""
    d = event.data
    if event.type == "catalog.import_failed":
        return Message(
            "import_summary",
            f"{d['filename']} was not imported: {d['error']}",
            "The file stays in the inbox; upload a corrected version.",
            d,
        )
    c = d["counts"]
    title = f"{d['filename']} imported: {_plural(c.get('rows', 0), 'row')}, " + ", ".join(
        f"{c.get(k, 0)} {k}" for k in ("created", "updated", "unchanged", "deactivated", "rejected")
    )
    lines = [f"- {r['sheet']}!{r['row']}: {r['reason']}" for r in d["rejected"][:MAX_LISTED]]
    if c.get("rejected", 0) > len(lines):
        lines.append(f"- and {c['rejected'] - len(lines)} more (the report lists every row)")
    report = f"The report: {base_url}{d['report']}" if d.get("report") else "The report follows when it is written."
    body = "\n".join((["Rejected rows:", *lines, ""] if lines else []) + [report])
    return Message("import_summary", title, body, d)


def conversion_failed(event: Event, base_url: str) -> Message:
    d = event.data
    return Message(
        "conversion_failed",
        f"{d['filename']} ({d['pim_id']}) could not be converted: {d['error_class']}: {d['reason']}",
        "The file stays in the inbox; upload a corrected version to convert it again.",
        d,
    )


def alert(event: Event, base_url: str) -> Message:
    return Message("alert", f"Alert: {event.data['message']}", event.data.get("details", ""), event.data)


BY_TYPE = {
    "order.completed": order_summary,
    "order.rejected": order_rejected,
    "order.resubmitted": order_resubmitted,
    "catalog.imported": import_summary,
    "catalog.import_failed": import_summary,
    "conversion.failed": conversion_failed,
}


def message(event: Event, base_url: str) -> Message:
    """The notification of ``event`` (a type with an audience)."""
    return BY_TYPE.get(event.type, alert)(event, base_url.rstrip("/"))


def digest(period: str, items: list[tuple[str, str]]) -> tuple[str, str]:
    """A digest's title and body: every item's title, then its body indented."""
    title = f"{_plural(len(items), 'notification')} ({period} digest)"
    body = "\n\n".join(f"* {t}" + "".join(f"\n  {line}" for line in b.splitlines()) for t, b in items)
    return title, body
