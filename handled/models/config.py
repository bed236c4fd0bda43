"""PRIMARY database, schema ``config``: accounts, sessions, permissions, audit, run history."""

from peewee import (AutoField, BigAutoField, BigIntegerField, BooleanField, CompositeKey,
                    ForeignKeyField, IntegerField, TextField)
from playhouse.postgres_ext import BinaryJSONField

from handled.db import PrimaryModel, TimestampTzField
from handled.timeutil import utcnow


class ConfigModel(PrimaryModel):
    class Meta:
        schema = "config"


class User(ConfigModel):
    id = AutoField()
    email = TextField()  # unique on lower(email), see migration 0001
    name = TextField()
    password_hash = TextField()
    disabled = BooleanField(default=False)
    must_change_password = BooleanField(default=False)
    created_at = TimestampTzField(default=utcnow)
    updated_at = TimestampTzField(default=utcnow)
    last_login_at = TimestampTzField(null=True)
    password_changed_at = TimestampTzField(default=utcnow)

    class Meta:
        table_name = "users"


class Session(ConfigModel):
    id = TextField(primary_key=True)  # sha256 hex of the token
    user = ForeignKeyField(User, backref="sessions", on_delete="CASCADE", index=True)
    created_at = TimestampTzField(default=utcnow)
    last_seen_at = TimestampTzField(default=utcnow)
    expires_at = TimestampTzField(index=True)
    ip = TextField(null=True)
    user_agent = TextField(null=True)

    class Meta:
        table_name = "sessions"


class Role(ConfigModel):
    id = AutoField()
    code = TextField(unique=True)
    name = TextField()
    description = TextField(default="")
    is_system = BooleanField(default=False)

    class Meta:
        table_name = "roles"


class Permission(ConfigModel):
    id = AutoField()
    code = TextField(unique=True)
    category = TextField()
    description = TextField(default="")

    class Meta:
        table_name = "permissions"


class RolePermission(ConfigModel):
    role = ForeignKeyField(Role, backref="role_permissions", on_delete="CASCADE")
    permission = ForeignKeyField(Permission, backref="role_permissions", on_delete="CASCADE", index=True)

    class Meta:
        table_name = "role_permissions"
        primary_key = CompositeKey("role", "permission")


class UserRole(ConfigModel):
    user = ForeignKeyField(User, backref="user_roles", on_delete="CASCADE")
    role = ForeignKeyField(Role, backref="user_roles", on_delete="CASCADE", index=True)

    class Meta:
        table_name = "user_roles"
        primary_key = CompositeKey("user", "role")


class PendingInvalidation(ConfigModel):
    """A session-cache invalidation not yet applied to Redis (handled/auth/session_cache.py)."""

    id = BigAutoField()
    user_id = IntegerField(null=True)  # no foreign key: a deleted user's entries must still go
    token_hash = TextField(null=True)
    everything = BooleanField(default=False)
    created_at = TimestampTzField(default=utcnow)

    class Meta:
        table_name = "pending_invalidations"


class LoginThrottle(ConfigModel):
    """A sign-in throttle counter kept in PRIMARY while Redis is down (handled/auth/throttle.py)."""

    kind = TextField()
    key = TextField()
    count = IntegerField(default=0)
    window_start = TimestampTzField(default=utcnow)
    last_at = TimestampTzField(null=True)
    audit_id = BigIntegerField(null=True)  # 'refused' rows: the audit row of the run's first attempt

    class Meta:
        table_name = "login_throttle"
        primary_key = CompositeKey("kind", "key")


class AuditLog(ConfigModel):
    id = BigAutoField()
    occurred_at = TimestampTzField(default=utcnow, index=True)
    # the actor's id as it was, not a foreign key: the trail outlives a deleted account
    # (and an ON DELETE action would rewrite rows of an append-only table)
    actor_id = IntegerField(null=True)
    actor_email = TextField(null=True, index=True)
    action = TextField(index=True)
    target_type = TextField(null=True)
    target_id = TextField(null=True)
    target_label = TextField(null=True)
    ip = TextField(null=True)
    details = BinaryJSONField(default=dict)

    class Meta:
        table_name = "audit_log"


class RunRecord(ConfigModel):
    """Columns every run history table shares."""

    id = BigAutoField()
    status = TextField(default="pending")
    rows_written = BigIntegerField(default=0)
    message = TextField(null=True)
    started_at = TimestampTzField(default=utcnow)
    finished_at = TimestampTzField(null=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_by_email = TextField(null=True)
    worker = TextField(null=True)       # <host>:<pid> of the process running it (heartbeat.py)


class ImportRun(RunRecord):
    integration = TextField()
    file_name = TextField()
    file_sha256 = TextField(index=True)
    file_size = BigIntegerField()
    partial = BooleanField(default=False)
    rows_read = BigIntegerField(default=0)
    rows_rejected = BigIntegerField(default=0)
    rejected_rows = BinaryJSONField(default=list)

    class Meta:
        table_name = "import_runs"


class TransformationRun(RunRecord):
    transformation = TextField()
    phase = TextField(null=True)
    phase_timings = BinaryJSONField(default=dict)
    job_id = TextField(null=True)

    class Meta:
        table_name = "transformation_runs"


class ExportRun(RunRecord):
    export = TextField()
    bytes_written = BigIntegerField(default=0)

    class Meta:
        table_name = "export_runs"


class BackupRun(RunRecord):
    """A `flask backup create` (one target) or `flask backup verify` (one file); rows_written is
    the rows dumped (0 for the archive), copy_status what BACKUP_COPY_COMMAND did (None: not set)."""

    operation = TextField()         # create | verify
    target = TextField()            # primary | data | archive
    file_name = TextField(null=True)
    file_size = BigIntegerField(null=True)
    copy_status = TextField(null=True)

    class Meta:
        table_name = "backup_runs"
