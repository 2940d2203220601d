"""A loopback port for a server a test starts later, chosen below the kernel's ephemeral range.

Binding port 0 and closing the probe hands out a port from the ephemeral range, which the kernel
also gives any outgoing connection as its local port: between the probe and the server's own
bind, a client connecting anywhere on the machine could take it (a CI run failed so, with
"Address already in use" from a supervisor's HTTP port). A port below that range is never given
to an outgoing connection, so only another explicit bind could take it, and the probe checks
that none holds it now.
"""

import random
import socket

_LOWEST_PORT = 10_000
_choices = random.SystemRandom()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now and no outgoing connection will be given."""
    highest = min(_ephemeral_low(), 65_536) - 1
    for _ in range(500):
        if highest <= _LOWEST_PORT:
            break
        port = _choices.randint(_LOWEST_PORT, highest)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    # An odd port range (or a full one): the kernel's choice, with the race above.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
