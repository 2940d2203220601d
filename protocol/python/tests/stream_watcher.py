"""A collector of a relay in a thread of its own, for end-to-end tests that watch the stream while
they drive the real binaries from synchronous code."""
import asyncio
import threading
from typing import List, Optional, Sequence

from allegro_client import Collector, TelemetryEvent


class StreamWatcher:
    """Collects from the earliest record and keeps every event whose kind starts with one of `kinds`
    (`snapshot()`). With `name` it is that durable collector, connected while it runs (`connected`),
    and commits what it reads when `commit`. `stop()` ends it."""

    def __init__(self, address: str, name: Optional[str] = None, commit: bool = False,
                 kinds: Sequence[str] = ("allegro.",)) -> None:
        self.address, self.name, self.commit, self.kinds = address, name, commit, tuple(kinds)
        self.events: List[TelemetryEvent] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="stream-watcher", daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def snapshot(self) -> List[TelemetryEvent]:
        """The events kept so far, in stream order."""
        with self._lock:
            return list(self.events)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self._collect())
        self._ready.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    async def _collect(self) -> None:
        def on_state(collector: Collector, state: str, detail: str) -> None:
            if state == "connected":
                self.connected.set()

        collector = Collector(self.address, name=self.name, start="earliest", max_backoff=0.5, on_state=on_state)
        try:
            async for item in collector:
                if isinstance(item, TelemetryEvent):
                    if item.kind.startswith(self.kinds):
                        with self._lock:
                            self.events.append(item)
                    if self.commit:
                        await item.commit()
        finally:
            await collector.close(5)

    def stop(self) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass
        self._thread.join(10)
