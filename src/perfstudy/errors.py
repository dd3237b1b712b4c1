"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class UsageError(Exception):
    """Bad input from the user (unknown name, bad value, missing GPU...)."""


class DataError(UsageError):
    """A dataset file is missing, corrupt or fails verification. The message names the file."""
