"""Operations: moving PRIMARY between single and split mode, backups, rebuilds, metrics.

Every tool here opens its own direct, short-lived connections from a
``DatabaseConfig`` (handled.catalog.connect_direct): they run from the CLI,
never inside a web request.
"""


class OpsError(Exception):
    """An operation cannot go on; the message says why and what to do."""
