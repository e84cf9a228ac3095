"""Errors of the daemon layer; each maps to one line for the operator and an exit code."""

from __future__ import annotations

from protocol.errors import LiberationError


class NodeError(LiberationError):
    code = "node_error"
    #: Process exit code when this error stops the CLI.
    exit_code = 1


class ConfigError(NodeError):
    """The configuration is not valid."""

    code = "config_error"
    exit_code = 2


class IdentityError(NodeError):
    """The node's key file cannot be used."""

    code = "identity_error"
    exit_code = 2


class DataDirError(NodeError):
    """The data directory cannot be used."""

    code = "data_dir_error"
    exit_code = 2


class DataDirLocked(DataDirError):
    """Another process is using the data directory."""

    code = "data_dir_locked"


class NotRunning(NodeError):
    """No node answers on the given status port."""

    code = "not_running"
    exit_code = 3


class ApiError(NodeError):
    """The node answered a CLI request with an error."""

    code = "api_error"


class UsageError(NodeError):
    """The command line is not valid."""

    code = "usage_error"
    exit_code = 2


class DirectFailed(NodeError):
    """A direct message could not be delivered."""

    code = "unreachable"
