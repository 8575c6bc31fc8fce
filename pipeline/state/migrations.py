"""Numbered schema migrations, applied in order on start (sqlite-utils style, one per step)."""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]


# 001: the tables every run needs, one statement group per table.
_RUNS = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    app TEXT NOT NULL,
    env TEXT NOT NULL,
    state TEXT NOT NULL,
    requester TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    current INTEGER NOT NULL,
    desired INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    image_name TEXT NOT NULL,
    image_created_at TEXT,
    image_versions TEXT NOT NULL DEFAULT '{}',
    strategy TEXT NOT NULL,
    max_parallel INTEGER NOT NULL,
    target TEXT NOT NULL,
    approvals_needed INTEGER NOT NULL,
    expires_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    notes TEXT NOT NULL DEFAULT '[]',
    channel TEXT,
    message_ts TEXT
);
-- One active run per (app, env), enforced by the database itself.
CREATE UNIQUE INDEX runs_one_active ON runs (app, env)
    WHERE state IN ('planned', 'awaiting_approval', 'approved', 'running');
CREATE INDEX runs_app ON runs (app, id);
CREATE INDEX runs_state ON runs (state);
"""

_SERVERS = """
CREATE TABLE servers (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    slot INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    step TEXT,
    provider_id TEXT,
    registered INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    cleanup TEXT,
    note TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, slot)
);
CREATE INDEX servers_provider_id ON servers (provider_id);
"""

_APPROVALS = """
CREATE TABLE approvals (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    user TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id, user)
);
"""

_AUDIT = """
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    run_id INTEGER,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_run ON audit (run_id, id);
"""

_META = """
-- A random id per database, part of every idempotency key, so that a new database
-- never reuses an old one's EC2 ClientToken or GCE requestId.
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('install_id', lower(hex(randomblob(3))));
"""


def m001_runs(db: sqlite_utils.Database) -> None:
    for table in (_RUNS, _SERVERS, _APPROVALS, _AUDIT, _META):
        _script(db, table)


def m002_alerts(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            app TEXT NOT NULL,
            env TEXT NOT NULL,
            image_id TEXT NOT NULL,
            finding TEXT NOT NULL,
            image_name TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL,
            state TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            snoozed_until TEXT,
            snoozed_by TEXT,
            resolved_at TEXT,
            channel TEXT,
            message_ts TEXT,
            UNIQUE (app, env, image_id, finding)
        );
        CREATE INDEX alerts_state ON alerts (state);
        CREATE TABLE scans (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            trigger TEXT NOT NULL,
            findings INTEGER NOT NULL
        );
        """,
    )


def _script(db: sqlite_utils.Database, sql: str) -> None:
    # executescript() would COMMIT first, breaking the migration's transaction.
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def m003_replies(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        -- Thread replies already posted for a run ('failure:<slot>', 'summary'), so a restart
        -- never says the same thing twice.
        CREATE TABLE replies (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            what TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (run_id, what)
        );
        """,
    )


def m004_adopted(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        -- Servers this installation took over from another one (`byoi adopt`): their keys
        -- carry the other installation's id, so the key prefix alone does not say they are ours.
        CREATE TABLE adopted (
            key TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            server_id TEXT NOT NULL,
            app TEXT NOT NULL,
            env TEXT NOT NULL,
            installation TEXT NOT NULL,
            at TEXT NOT NULL
        );
        """,
    )


def m005_cards(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        -- What each run's card last showed, so a restart re-queues every card that is
        -- behind the store (pending edits otherwise live only in memory). A settled card shows
        -- a finished run and every thread reply it needs.
        CREATE TABLE cards (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id),
            shown TEXT NOT NULL,
            settled INTEGER NOT NULL DEFAULT 0,
            at TEXT NOT NULL
        );
        -- Runs that finished before this table existed were shown as well as byoi could then.
        INSERT INTO cards (run_id, shown, settled, at)
            SELECT id, state, 1, datetime('now') FROM runs
            WHERE state NOT IN ('planned', 'awaiting_approval', 'approved', 'running');
        -- The same for alert cards: the revision of the alert the card last showed.
        CREATE TABLE alert_cards (
            alert_id INTEGER PRIMARY KEY REFERENCES alerts (id),
            shown TEXT NOT NULL,
            at TEXT NOT NULL
        );
        INSERT INTO alert_cards (alert_id, shown, at)
            SELECT id,
                state || ':' || coalesce(snoozed_until, '') || ':' || coalesce(resolved_at, ''),
                datetime('now')
            FROM alerts WHERE message_ts IS NOT NULL;
        """,
    )


def m006_thread_replies(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        -- A phase reply is edited as its servers progress: where it is and what it says now.
        ALTER TABLE replies ADD COLUMN shown_as TEXT;
        ALTER TABLE replies ADD COLUMN text TEXT;
        -- An alert is reminded at most once per stale.remind_every.
        ALTER TABLE alerts ADD COLUMN reminded_at TEXT;
        """,
    )


def m007_lifecycle(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        -- What the probes printed on a server, per provider server id (see state/measured.py).
        CREATE TABLE measurements (
            provider_id TEXT PRIMARY KEY,
            app TEXT NOT NULL,
            env TEXT NOT NULL,
            image_id TEXT NOT NULL,
            versions TEXT NOT NULL,
            measured_at TEXT NOT NULL,
            run_id INTEGER
        );
        -- The image a refresh run made, and whether it was published into the family.
        CREATE TABLE run_images (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id),
            image_id TEXT NOT NULL,
            image_name TEXT NOT NULL,
            versions TEXT NOT NULL,
            published INTEGER NOT NULL,
            forced INTEGER NOT NULL DEFAULT 0,
            mismatches TEXT NOT NULL DEFAULT '{}'
        );
        -- Options of refresh and roll runs: --force, a roll's batches and its canary pause.
        CREATE TABLE run_options (
            run_id INTEGER PRIMARY KEY REFERENCES runs (id),
            batch_size INTEGER NOT NULL DEFAULT 1,
            canary INTEGER NOT NULL DEFAULT 0,
            paused INTEGER NOT NULL DEFAULT 0,
            continued INTEGER NOT NULL DEFAULT 0,
            force INTEGER NOT NULL DEFAULT 0
        );
        """,
    )


def m008_reply_intents(db: sqlite_utils.Database) -> None:
    _script(
        db,
        """
        -- A thread reply is recorded (posted = 0) before it is posted, so a crash between
        -- the chat taking the post and byoi storing where it is cannot make a restart post it
        -- twice: the restart looks it up in the thread first. Every earlier row was posted.
        ALTER TABLE replies ADD COLUMN posted INTEGER NOT NULL DEFAULT 1;
        """,
    )


MIGRATIONS: tuple[tuple[str, Migration], ...] = (
    ("001_runs", m001_runs),
    ("002_alerts", m002_alerts),
    ("003_replies", m003_replies),
    ("004_adopted", m004_adopted),
    ("005_cards", m005_cards),
    ("006_thread_replies", m006_thread_replies),
    ("007_lifecycle", m007_lifecycle),
    ("008_reply_intents", m008_reply_intents),
)


def apply(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations, each with its record in one transaction; returns their names."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    done = {row["name"] for row in db.query("SELECT name FROM migrations")}
    applied = []
    for name, migrate in MIGRATIONS:
        if name in done:
            continue
        with db.atomic():
            migrate(db)
            db.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, datetime('now'))", [name]
            )
        applied.append(name)
    return applied
