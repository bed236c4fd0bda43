"""Domain errors of accounts, roles and sessions: each carries a sentence a user can act on."""


class AccountError(Exception):
    """A request about accounts, roles or sessions that cannot be carried out, and why."""


class NotFound(AccountError):
    """The user, role or session named does not exist (any more)."""
