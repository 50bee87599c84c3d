"""Errors that end a run with one clear line instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (a config, an argument, a missing artifact); message is one line."""
