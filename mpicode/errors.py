"""Errors the user can cause. Each is printed as one line (``mpicode: error: ...``) and ends
the command with exit code 2, on every rank, never with a traceback."""


class UsageError(Exception):
    """Bad input from the user: a configuration, a data or run file, a command line."""


class WriteError(Exception):
    """An output file could not be written (a full disk, a quota, an I/O error): one line,
    exit code 1; nothing was created or replaced under the output's name."""


class PluginError(Exception):
    """A plugin's code raised. ``str(e)`` is the one line that names the plugin (its kind,
    name, entry point and distribution), the callback and the error; ``__cause__`` is the
    original exception (its traceback is shown with ``--verbose``). The run is marked
    failed and the command exits 1. Made by :func:`mpicode.registry.blame`."""
