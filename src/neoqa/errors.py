"""The one error type a user can cause; the CLI prints it as one line and exits non-zero."""


class NeoqaError(Exception):
    """A problem with user input (a file, a sheet, a field) described in one line."""
