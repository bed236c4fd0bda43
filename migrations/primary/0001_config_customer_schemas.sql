-- PRIMARY database: accounts, sessions, permissions, audit, run history (config)
-- and the operator's clients and warehouses (customer).
-- depends:

CREATE SCHEMA IF NOT EXISTS config;
CREATE SCHEMA IF NOT EXISTS customer;

CREATE TABLE config.users (
    id                  SERIAL PRIMARY KEY,
    email               TEXT NOT NULL,
    name                TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    disabled            BOOLEAN NOT NULL DEFAULT false,
    must_change_password BOOLEAN NOT NULL DEFAULT false,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at       TIMESTAMPTZ,
    password_changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_key ON config.users (lower(email));

CREATE TABLE config.sessions (
    id           TEXT PRIMARY KEY,           -- sha256 of the token; the token is never stored
    user_id      INTEGER NOT NULL REFERENCES config.users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_user_id ON config.sessions (user_id);
CREATE INDEX sessions_expires_at ON config.sessions (expires_at);

CREATE TABLE config.roles (
    id          SERIAL PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_system   BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE config.permissions (
    id          SERIAL PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    category    TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE config.role_permissions (
    role_id       INTEGER NOT NULL REFERENCES config.roles (id) ON DELETE CASCADE,
    permission_id INTEGER NOT NULL REFERENCES config.permissions (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission_id)
);
CREATE INDEX role_permissions_permission_id ON config.role_permissions (permission_id);

CREATE TABLE config.user_roles (
    user_id INTEGER NOT NULL REFERENCES config.users (id) ON DELETE CASCADE,
    role_id INTEGER NOT NULL REFERENCES config.roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_id ON config.user_roles (role_id);

CREATE TABLE config.audit_log (
    id           BIGSERIAL PRIMARY KEY,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id     INTEGER REFERENCES config.users (id) ON DELETE SET NULL,
    actor_email  TEXT,                       -- kept as text so the trail survives a deleted user
    action       TEXT NOT NULL,
    target_type  TEXT,
    target_id    TEXT,
    target_label TEXT,
    ip           TEXT,
    details      JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_occurred_at ON config.audit_log (occurred_at);
CREATE INDEX audit_log_action ON config.audit_log (action);
CREATE INDEX audit_log_actor_email ON config.audit_log (actor_email);

CREATE TABLE config.import_runs (
    id              BIGSERIAL PRIMARY KEY,
    integration     TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    file_sha256     TEXT NOT NULL,
    file_size       BIGINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    partial         BOOLEAN NOT NULL DEFAULT false,
    rows_read       BIGINT NOT NULL DEFAULT 0,
    rows_written    BIGINT NOT NULL DEFAULT 0,
    rows_rejected   BIGINT NOT NULL DEFAULT 0,
    rejected_rows   JSONB NOT NULL DEFAULT '[]',   -- the first rejected rows, capped
    message         TEXT,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    created_by_id   INTEGER REFERENCES config.users (id) ON DELETE SET NULL,
    created_by_email TEXT
);
CREATE INDEX import_runs_integration ON config.import_runs (integration, started_at);
CREATE INDEX import_runs_file_sha256 ON config.import_runs (file_sha256);

CREATE TABLE config.transformation_runs (
    id               BIGSERIAL PRIMARY KEY,
    transformation   TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    rows_written     BIGINT NOT NULL DEFAULT 0,
    phase            TEXT,
    phase_timings    JSONB NOT NULL DEFAULT '{}',
    message          TEXT,
    job_id           TEXT,
    worker           TEXT,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    created_by_id    INTEGER REFERENCES config.users (id) ON DELETE SET NULL,
    created_by_email TEXT
);
CREATE INDEX transformation_runs_transformation ON config.transformation_runs (transformation, started_at);

CREATE TABLE config.export_runs (
    id               BIGSERIAL PRIMARY KEY,
    export           TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    rows_written     BIGINT NOT NULL DEFAULT 0,
    bytes_written    BIGINT NOT NULL DEFAULT 0,
    message          TEXT,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    created_by_id    INTEGER REFERENCES config.users (id) ON DELETE SET NULL,
    created_by_email TEXT
);
CREATE INDEX export_runs_export ON config.export_runs (export, started_at);

CREATE TABLE customer.organizations (
    id            SERIAL PRIMARY KEY,
    code          TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    contact_name  TEXT,
    contact_email TEXT,
    contact_phone TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE customer.facilities (
    id            SERIAL PRIMARY KEY,
    code          TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    address_line1 TEXT NOT NULL DEFAULT '',
    address_line2 TEXT,
    city          TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL DEFAULT '',
    zip           TEXT NOT NULL CHECK (zip ~ '^[0-9]{5}$'),
    timezone      TEXT NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT true,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE customer.facility_organizations (
    facility_id     INTEGER NOT NULL REFERENCES customer.facilities (id) ON DELETE CASCADE,
    organization_id INTEGER NOT NULL REFERENCES customer.organizations (id) ON DELETE CASCADE,
    PRIMARY KEY (facility_id, organization_id)
);
CREATE INDEX facility_organizations_organization_id ON customer.facility_organizations (organization_id);
