"""Every migration can be rolled back, on a database with data: a release can be undone.

The chain is walked up, each revision seeding rows into the tables it touches, then down again:
each downgrade runs on those rows, is undone by its upgrade (on the rows left) and runs again.
After each downgrade the schema is exactly what the revision below had on the way up (columns,
constraints, indexes, policies, row-level security, functions, privileges), and no table the
revision did not create loses a row.
"""

from __future__ import annotations

import uuid

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import make_url, text

from automat_pipeline.db.database import MIGRATIONS, downgrade, engine, ensure_database, migrate

# Rows each revision's tables get, in that revision's schema. A new migration adds its own entry:
# the test fails for a revision without one.
SEEDS: dict[str, list[str]] = {
    "0001": [
        "INSERT INTO tenants (slug, name) VALUES ('acme', 'ACME Wälzlager GmbH'), ('beta', 'βeta 株式会社')",
        "INSERT INTO products (tenant_id, pim_id, name, step_filename, attributes) VALUES "
        "(1, '6204-2RS', 'Rillenkugellager', '6204-2RS.stp', '{\"d\": 20}'), "
        f"(1, '{'P' * 64}', 'sixty-four', NULL, '{{}}'), (2, 'B-1', 'Ⅻ ünïcödé', 'b.step', '{{}}')",
        "INSERT INTO product_files (tenant_id, product_id, filename, kind, sha256, size_bytes, status, error) VALUES "
        "(1, 1, '6204-2RS.stp', 'step', repeat('a', 64), 10, 'ok', NULL), "
        "(2, NULL, 'zz.step', 'step', repeat('b', 64), 3, 'rejected', 'not_step: zz.step is empty')",
    ],
    "0002": [
        "UPDATE tenants SET settings = '{\"cad\": {\"timeout_seconds\": 60}}' WHERE slug = 'acme'",
        "INSERT INTO products (tenant_id, pim_id, key, name, category_key, lagertyp, source_file, materials) "
        "VALUES (1, 'NU 205-E', 'NU_205-E', 'Zylinderrollenlager', 'cyl', 'Zylinderrollenlager', 'p.xlsx', "
        f"'{{\"Cage\": \"Brass\"}}'), (2, '{'L' * 200}', 'long', 'a PIM-ID as long as 0002 allows', NULL, NULL, "
        "NULL, '{}')",
        "INSERT INTO catalog_imports (tenant_id, filename, sha256, trigger, status, error, counts, outcomes) VALUES "
        "(1, 'p.xlsx', repeat('c', 64), 'sensor', 'ok', NULL, '{\"rows\": 3}', '{\"rejected\": []}'), "
        "(1, 'x.xlsx', repeat('d', 64), 'api', 'failed', 'corrupt_zip: x.xlsx', '{}', '{}')",
    ],
    "0003": [
        "INSERT INTO materials (tenant_id, name, base_color, metallic, roughness, description) VALUES "
        "(1, 'ACME_Zinc', '[0.8, 0.8, 0.8]', 1, 0.3, 'Zink')",
        "INSERT INTO material_aliases (tenant_id, pattern, material_name, position) VALUES "
        "(1, '*Cage*', 'ACME_Zinc', 0), (2, 'Ring*', 'SCHAEFFLER_010101_Steel-Bare', 1)",
    ],
    "0004": ["INSERT INTO output_types (tenant_id, name, settings) VALUES (1, 'still-4k', '{\"width\": 3840}')"],
    "0005": [
        "INSERT INTO media_assets (tenant_id, product_id, asset, output_type, status, path, error_class, reason, "
        "run_id, details) VALUES (1, 1, 'thumbnail', 'thumbnail', 'completed', '/m/t.png', NULL, NULL, 'r1', '{}'), "
        "(1, 2, 'glb_geometry', 'standard', 'failed', NULL, 'no_geometry', 'x.stp holds none', 'r2', '{}')"
    ],
    "0006": [
        "INSERT INTO users (tenant_id, email, password_hash, role) VALUES "
        "(NULL, 'Admin@Example.com', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 'global_admin'), "
        "(1, 'pm@acme.example', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 'project_manager'), "
        "(2, 'ÄRGER@beta.example', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', 'client')",
        "INSERT INTO refresh_tokens (user_id, token_sha256, expires_at) VALUES (2, repeat('e', 64), now())",
        "INSERT INTO orders (tenant_id, created_by, status, submitted_at) VALUES "
        "(1, 2, 'submitted', now()), (1, 2, 'draft', NULL), (2, 3, 'rejected', now())",
        "INSERT INTO order_lines (order_id, tenant_id, product_id, output_type, run_id, launch_error) VALUES "
        "(1, 1, 1, 'thumbnail', 'run-1', NULL), (1, 1, 2, 'thumbnail', NULL, 'refused'), "
        "(3, 2, 3, 'still-web', NULL, NULL)",
        "INSERT INTO uploads (tenant_id, created_by, filename, kind, size_bytes, sha256) VALUES "
        "(1, 2, 'p.xlsx', 'catalog', 100, repeat('c', 64))",
    ],
    "0007": [],  # indexes and a search function over products and media_assets, which have rows
    "0008": [
        "INSERT INTO workflows (tenant_id, name, document) VALUES (1, 'web', '{\"nodes\": []}')",
        "UPDATE orders SET workflow = 'web' WHERE id = 2",
    ],
    "0009": [],  # an index over product_files, which has rows
    "0010": [
        "UPDATE tenants SET active = false WHERE slug = 'beta'",
        "UPDATE users SET token_version = 3 WHERE id = 2",
        "INSERT INTO refresh_tokens (user_id, token_sha256, family, expires_at, revoked_at) VALUES "
        "(2, repeat('f', 64), repeat('e', 64), now(), now())",
        "INSERT INTO login_failures (email_normalized, client_address) VALUES ('pm@acme.example', '127.0.0.1')",
    ],
    "0011": [
        "UPDATE order_lines SET state = 'failed', error_class = 'launch_refused', reason = 'gone', "
        "launch_attempts = 5 WHERE id = 2",
        "UPDATE order_lines SET state = 'completed', outputs = '[{\"media_id\": 1}]', seconds = 1.5 WHERE id = 1",
        "INSERT INTO orders (tenant_id, created_by, status, number) VALUES (1, 2, 'draft', 'ORD-2030-000009')",
        "INSERT INTO order_numbers (tenant_id, year, last) VALUES (1, 2030, 9)",
        "INSERT INTO order_history (tenant_id, order_id, event, by_user, reason, lines) VALUES "
        "(1, 1, 'submitted', 2, NULL, '[1, 2]'), (2, 3, 'rejected', 1, 'too vague', '[]')",
    ],
    "0012": [
        "INSERT INTO password_resets (user_id, token_sha256, expires_at, used_at, revoked_at) VALUES "
        "(2, repeat('1', 64), now() + interval '1 hour', now(), NULL), "
        "(2, repeat('2', 64), now() + interval '1 hour', NULL, now()), "
        "(3, repeat('3', 64), now() - interval '1 minute', NULL, NULL)",
        "SELECT automat_password_reset_issue(3, repeat('4', 64), now() + interval '15 minutes')",  # revokes the '3'
    ],
    "0013": [
        "INSERT INTO inbox_files (folder, filename, size_bytes, mtime_ns, ctime_ns, inode, sha256, changed_tick) "
        "VALUES ('acme', '6204-2RS.stp', 10, 1764460800123456789, 1764460800987654321, 1048577, repeat('a', 64), 1), "
        "('beta', 'Lager ø20 – Ⅻ.step', 3, 1764460801000000000, 1764460801000000000, 2097153, repeat('b', 64), 2)",
        "SELECT setval('upload_sensor_ticks', 2)",
        "INSERT INTO media_requests (product_id, media_key, tick) VALUES (1, md5('6204-2RS') || md5('ACME_Zinc'), 1), "
        "(3, repeat('b', 64), 2)",
        "UPDATE catalog_imports SET dispatch_error = 'DagsterUnavailable: Verbindung abgelehnt — später' WHERE id = 1",
    ],
    "0014": [
        "INSERT INTO observations (metric, step, tenant, count, sum, buckets) VALUES "
        "('conversion', 'cad_conversion', 'acme', 3, 4.25, '{0,0,0,1,1,2,3,3,3,3,3,3,3,3,3,3}'), "
        "('render', 'thumbnail', 'βeta', 1, 31.5, '{0,0,0,0,0,0,0,0,0,1,1,1,1,1,1,1}'), "
        "('sensor_tick', 'upload_sensor', '', 2, 0.07, '{1,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2}')",
    ],
    "0015": [
        "INSERT INTO render_hosts (name, device, backend, driver, probed_at, probe, cache_warm, warmed_at, "
        "gpu_renders, cpu_renders, last_render_at) VALUES "
        "('render-01', 'NVIDIA H200', 'OPTIX', '570.86.15', now(), '{\"cuda\": \"12.8\", \"vram_gib\": 139}', "
        "true, now(), 12, 3, now()), "
        "('wärme-cpu', NULL, NULL, NULL, NULL, '{}', false, NULL, 0, 0, NULL)",
    ],
    "0016": [
        "INSERT INTO render_templates (tenant_id, name, sha256, size_bytes, status, error_class, reason, report, "
        "uploaded_by, checked_at, run_id, launch_error, launch_attempts) VALUES "
        "(1, 'Studio Weiß', repeat('a', 64), 524288, 'ok', NULL, NULL, '{\"cameras\": [\"Kamera\"]}', 2, now(), "
        "'run-t1', NULL, 1), "
        "(1, 'Studio Weiß', repeat('b', 64), 9, 'refused', 'template_script', 'Skript eingebettet: ☠.py', '{}', 2, "
        "now(), 'run-t2', NULL, 1), "
        "(2, 'Drehteller 回転', repeat('c', 64), 1024, 'checking', NULL, NULL, '{}', NULL, NULL, NULL, "
        "'Dagster antwortet nicht', 3)",
    ],
    "0017": [
        "UPDATE order_lines SET ended_at = now() WHERE state IN ('completed', 'failed')",
        "INSERT INTO events (tenant_id, key, type, category, subject, owner_id, actor_id, data) VALUES "
        "(1, 'order.completed:1:1764460800.000000', 'order.completed', "
        "'orders', 'order:1', 2, NULL, '{\"number\": \"ORD-2030-000009\"}'), "
        "(2, 'upload.received:2:Lager ø20.step@bbbbbbbbbbbbbbbb', 'upload.received', "
        "'imports', 'upload:1', 3, 3, '{\"filename\": \"Lager ø20.step\"}'), "
        "(NULL, 'alert.disk_space:2030-01-01', 'alert.disk_space', 'alerts', NULL, NULL, NULL, '{\"free\": 0.04}')",
        "INSERT INTO event_queue (event_id) VALUES (2), (3)",
        "INSERT INTO notifications (tenant_id, user_id, key, event_id, category, kind, title, body, data, shown_at, "
        "digest, digest_id, read_at) VALUES "
        "(1, 2, 'event:1:user:2', 1, 'orders', 'order.completed', 'Auftrag ORD-2030-000009 fertig', "
        "'Alles gerendert ✓', '{\"order_id\": 1}', now(), NULL, NULL, now()), "
        "(NULL, 1, 'event:3:user:1', 3, 'alerts', 'alert.disk_space', 'Speicher fast voll', '4 % frei', '{}', NULL, "
        "'daily', NULL, NULL), "
        "(NULL, 1, 'digest:in_app:daily:1:2030-01-02T00:00:00+00:00', NULL, 'alerts', 'digest', 'Tagesübersicht', "
        "'1 Meldung', '{}', now(), NULL, NULL, NULL)",
        "UPDATE notifications SET digest_id = 3 WHERE id = 2",
        "INSERT INTO notification_preferences (user_id, tenant_id, category, channel, mode) VALUES "
        "(2, 1, 'orders', 'email', 'daily'), (3, 2, 'imports', 'in_app', 'never')",
        "INSERT INTO webhooks (tenant_id, url, event_types, secret, description, active, created_by) VALUES "
        "(1, 'https://hooks.acme.example/automat', '[\"order.completed\"]', 'whsec_ÄÖÜ', 'ERP-Anbindung', true, 2)",
        "INSERT INTO deliveries (tenant_id, key, channel, notification_id, webhook_id, event_id, target, payload, "
        "state, digest, batch_id, attempts, next_attempt_at, last_status, last_error, log, sent_at) VALUES "
        "(1, 'webhook:1:event:1', 'webhook', NULL, 1, 1, 'https://hooks.acme.example/automat', NULL, 'failed', "
        "NULL, NULL, 8, now() + interval '1 hour', 503, 'Service Unavailable', '[{\"status\": 503}]', NULL), "
        "(1, 'email:event:1:user:2', 'email', 1, NULL, 1, 'pm@acme.example', NULL, 'batched', 'daily', 3, 0, "
        "now(), NULL, NULL, '[]', NULL), "
        "(1, 'digest:email:daily:2:2030-01-02', 'email', NULL, NULL, NULL, 'pm@acme.example', "
        "'{\"subject\": \"Tageszusammenfassung für ACME\"}', 'sent', NULL, NULL, 1, now(), 250, NULL, "
        "'[{\"status\": 250}]', now())",
        "INSERT INTO audit_log (tenant_id, actor_id, actor, role, source, action, object, summary, request_id) VALUES "
        "(1, 2, NULL, 'project_manager', 'api', 'order.submit', 'order:1', '{\"lines\": 2}', 'req-1'), "
        "(NULL, NULL, 'cli:jürgen', 'operator', 'cli', 'tenant.create', 'tenant:beta', '{}', NULL)",
    ],
    "0018": [
        "UPDATE order_lines SET launch_attempts = 2, launch_attempted_at = now() - interval '1 minute' WHERE id = 2"
    ],
    # An index over media_assets, which has rows; a line_retried event is not seeded: the revision
    # below has no such event, so its downgrade deletes those rows (order_history keeps the rest).
    "0019": [],
    "0020": [],  # a role and its privileges over tables that have rows
    "0021": ["UPDATE order_lines SET batch_id = 'bfk-ÄÖ-1', run_id = NULL WHERE id = 2"],
    "0022": [
        "INSERT INTO inbox_files (tenant_id, filename, size_bytes, mtime_ns, ctime_ns, inode, sha256, changed_tick) "
        "VALUES (2, 'Größe 2.STEP', 5, 1764460802000000000, 1764460802000000000, 3145729, repeat('c', 64), 3)",
        "SELECT setval('upload_sensor_ticks', 3)",
        "INSERT INTO media_requests (tenant_id, product_id, media_key, tick) VALUES (2, 5, repeat('c', 64), 3)",
    ],
    "0023": [],  # an index over order_lines, which has rows
}

# What the schema is, as sets of comparable facts. Extensions and their functions are left out
# (0007's pg_trgm stays: other databases' objects may use it); privileges count defaults as granted.
NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
RELATION_ACL = "coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))"
FINGERPRINT = {
    "columns": """SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
                         column_default FROM information_schema.columns WHERE table_schema = 'public'""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE connamespace = 'public'::regnamespace""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "policies": "SELECT tablename, policyname, cmd, roles::text, qual, with_check FROM pg_policies",
    "row_security": """SELECT relname, relrowsecurity FROM pg_class
                       WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'""",
    "functions": f"""SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosecdef, p.proconfig::text,
                            md5(btrim(regexp_replace(p.prosrc, '\\s+', ' ', 'g'))) FROM pg_proc p
                     WHERE p.pronamespace = 'public'::regnamespace AND {NOT_EXTENSION}""",
    "privileges": f"""SELECT c.relname, a.grantee::regrole::text, a.privilege_type
                      FROM pg_class c, aclexplode({RELATION_ACL}) a
                      WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S')""",
    "column_privileges": """SELECT c.relname, t.attname, a.grantee::regrole::text, a.privilege_type
                            FROM pg_class c JOIN pg_attribute t ON t.attrelid = c.oid, aclexplode(t.attacl) a
                            WHERE c.relnamespace = 'public'::regnamespace""",
    "function_privileges": f"""SELECT p.proname, a.grantee::regrole::text, a.privilege_type
                               FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) a
                               WHERE p.pronamespace = 'public'::regnamespace AND {NOT_EXTENSION}""",
}

# What a downgrade keeps on purpose, so that no row is lost: (revision, fingerprint, row below, row kept).
KEPT = {
    ("0002", "columns"): (
        ("products", "pim_id", "character varying", 64, "NO", None),
        ("products", "pim_id", "character varying", 200, "NO", None),  # 0001's code reads longer PIM-IDs too
    ),
}


def chain() -> list[tuple[str, str]]:
    """(revision, the one below it, 'base' for the first), oldest first."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    assert len(scripts.get_heads()) == 1, f"the migrations have several heads: {scripts.get_heads()}"
    return [(s.revision, s.down_revision or "base") for s in reversed(list(scripts.walk_revisions()))]


def schema(url: str) -> dict[str, set]:
    with engine(url).connect() as connection:
        return {
            name: {tuple(row) for row in connection.execute(text(sql)) if row[0] != "alembic_version"}
            for name, sql in FINGERPRINT.items()
        }


def rows(url: str) -> dict[str, int]:
    with engine(url).connect() as connection:
        tables = connection.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
        ).all()
        return {t: connection.scalar(text(f'SELECT count(*) FROM "{t}"')) for t in tables}


def differences(before: dict[str, set], after: dict[str, set]) -> dict[str, dict[str, list]]:
    return {
        name: {"lost": sorted(before[name] - after[name], key=str), "left": sorted(after[name] - before[name], key=str)}
        for name in FINGERPRINT
        if before[name] != after[name]
    }


@pytest.fixture
def scratch_database(domain_database: str):
    """An empty database of its own on the session's server (the shared one stays at head)."""
    name = f"automat_migrations_{uuid.uuid4().hex[:8]}"
    ensure_database(domain_database, name)
    url = make_url(domain_database).set(database=name).render_as_string(hide_password=False)
    yield url
    engine(url).dispose()
    with engine(domain_database).connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_every_downgrade_runs_on_data_and_restores_the_schema_below(scratch_database):
    url, revisions = scratch_database, chain()
    assert [r for r, _ in revisions if r not in SEEDS] == [], "a migration without seed rows in SEEDS"
    schemas = {"base": schema(url)}
    for revision, _ in revisions:
        migrate(url, revision)
        with engine(url).begin() as connection:
            for statement in SEEDS[revision]:
                connection.execute(text(statement))
        schemas[revision] = schema(url)
    assert [table for table, n in rows(url).items() if n == 0] == []  # every table holds rows

    failures = {}
    for revision, below in reversed(revisions):
        held = rows(url)
        downgrade(url, below)  # on every row the revisions up to this one wrote
        expected = {name: set(facts) for name, facts in schemas[below].items()}
        for (kept_by, name), (original, kept) in KEPT.items():
            if kept_by == revision:
                expected[name] = expected[name] - {original} | {kept}
        if changed := differences(expected, schema(url)):
            failures[f"{revision} down to {below}"] = changed
        kept = rows(url)
        lost = {t: (n, kept[t]) for t, n in held.items() if t in kept and kept[t] != n}
        assert lost == {}, f"downgrading {revision} lost rows (before, after): {lost}"
        migrate(url, revision)  # up again, on the rows the downgrade left
        if changed := differences(schemas[revision], schema(url)):
            failures[f"{below} up to {revision} again"] = changed
        assert {t: n for t, n in rows(url).items() if t in kept} == kept
        downgrade(url, below)
    assert failures == {}
    assert rows(url) == {}  # at base: nothing left
    migrate(url)
    assert schema(url) == schemas[revisions[-1][0]]
