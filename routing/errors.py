"""Typed errors of the routing layer.

Routing never fails because of a peer's bytes (the caller has decoded and verified every record),
so these describe the mesh as this node sees it: no path to a destination, or more nodes than the
graph may hold. The API maps them to one ``{error, detail}`` body.
"""

from __future__ import annotations

from protocol.errors import LiberationError
from protocol.identity import key_id


class RoutingError(LiberationError):
    """Routing could not answer a question about the mesh."""

    code = "routing_error"


class Unreachable(RoutingError):
    """No path over confirmed links leads to the destination."""

    code = "unreachable"

    def __init__(self, destination: bytes, detail: str = "") -> None:
        super().__init__(detail or f"no route to {key_id(destination)}")
        #: The node that cannot be reached.
        self.destination = destination


class MeshFull(RoutingError):
    """A record of a new node arrived while the graph holds its cap of nodes; it was not merged."""

    code = "mesh_full"
