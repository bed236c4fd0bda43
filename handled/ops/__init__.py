"""Operations: moving PRIMARY between single and split mode, backups, rebuilds, metrics.

Every tool here opens its own direct, short-lived connections
(handled.db.direct_connection): they run from the CLI, never inside a web request.
"""

from handled.errors import HandledError


class OpsError(HandledError):
    """An operation cannot go on; the message says why and what to do."""
