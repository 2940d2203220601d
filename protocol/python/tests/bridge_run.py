"""What the end-to-end tests' `allegro bridge` processes share: the running process, and telling a
stop the test asked for from a death it did not."""
import subprocess
from typing import Optional

from conftest import terminate


class BridgeRun:
    """Subclasses start `self.process` (and clear `stopping` when they do)."""

    def __init__(self) -> None:
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.stopping = False

    def died(self) -> bool:
        """True when the bridge exited without the test stopping it."""
        return not self.stopping and self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        assert self.process is not None
        self.stopping = True
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        self.stopping = True
        if self.process is not None:
            terminate(self.process)
