"""What the fake HTTP servers of these tests share: a request handler that keeps its server's open
connections in a set, so that closing a fake also cuts the keep-alive connections a client holds
(as a real server going away would), and that logs nothing."""
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Set


class TrackedHandler(BaseHTTPRequestHandler):
    """Subclasses set `connections` (the fake's set) and `connections_lock` (what guards it)."""

    protocol_version = "HTTP/1.1"     # keep-alive, as the real servers
    # TCP_NODELAY, as Go's and most real servers: http.server writes an answer's headers and body
    # apart, and with Nagle on each answer would wait for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    connections: Set[socket.socket]
    connections_lock: Any = threading.Lock()

    def setup(self) -> None:
        super().setup()
        with self.connections_lock:
            self.connections.add(self.connection)

    def finish(self) -> None:
        with self.connections_lock:
            self.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass
