"""Producer client for the Allegro telemetry relay (protocol/PROTOCOL.md, version 1)."""

from .producer import BufferFull, Producer, RelayRefused
from .wire import ProtocolError

__all__ = ["Producer", "BufferFull", "RelayRefused", "ProtocolError"]
