"""Clients for the Allegro telemetry relay (protocol/PROTOCOL.md, version 1): the producer (Hermes),
the collector, Timmy's HermesBridge and GiteaBridge (allegro_client.timmy) and
Timmy's signed approvals (allegro_client.approval, protocol/APPROVAL.md) and
the Allegro Requests, Reports and Alerts (allegro_client.messages, protocol/MESSAGES.md)."""

from .approval import Approval, ApprovalError, SigningError
from .collector import (AuthFailed, Collector, CollectorBusy, CollectorError, ConnectionLost, CursorUnavailable, Gap,
                        PermanentRelayError, ProtocolViolation, RelayError, ShuttingDown, TelemetryEvent,
                        TransientRelayError, UnknownCollector)
from .messages import AllegroAlert, AllegroReport, AllegroRequest, MessageError, Telemetry
from .producer import BufferFull, Producer, RecordTooLarge, RelayRefused
from .timmy import (GiteaBridge, GiteaBridgeError, HermesApproval, HermesBridge, HermesResult, HermesSessionError,
                    HermesToolCall, Issue, IssueComment, ModelAccessKey, ModelEndpoint, PendingHermesApproval,
                    read_approval)
from .wire import ProtocolError

__all__ = ["Producer", "BufferFull", "RecordTooLarge", "RelayRefused", "ProtocolError", "Collector", "TelemetryEvent", "Gap",
           "CollectorError", "RelayError", "PermanentRelayError", "TransientRelayError", "AuthFailed",
           "UnknownCollector", "CursorUnavailable", "CollectorBusy", "ShuttingDown", "ProtocolViolation",
           "ConnectionLost", "Approval", "ApprovalError", "SigningError", "AllegroRequest", "AllegroReport",
           "AllegroAlert", "Telemetry", "MessageError", "GiteaBridge", "GiteaBridgeError", "Issue", "IssueComment",
           "read_approval", "HermesBridge", "HermesResult", "HermesSessionError", "HermesToolCall", "HermesApproval",
           "PendingHermesApproval", "ModelEndpoint", "ModelAccessKey"]
