"""Jobs and the daemon's FIFO job queue, shared by the socket loop and the worker thread."""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass, field

from lr_bridge.protocol import EnhanceRequest


@dataclass(eq=False)
class Job:
    """One ``enhance`` request: a batch of files processed in order for one client."""

    client: bytes  # the ROUTER identity that events go to
    request_id: str  # the ``id`` of the enhance request; every event of the job echoes it
    request: EnhanceRequest
    user: str | None = None  # the CURVE key that submitted it: only it (or the owner) may cancel it
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancel: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """A thread-safe FIFO of jobs waiting for the worker; queued jobs can be withdrawn."""

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs wait before it."""
        with self._changed:
            self._jobs.append(job)
            self._changed.notify()
            return len(self._jobs) - 1

    def take(self) -> Job | None:
        """The oldest job, waiting for one; ``None`` once the queue is closed."""
        with self._changed:
            while not self._jobs and not self._closed:
                self._changed.wait()
            return None if self._closed else self._jobs.popleft()

    def withdraw(self, job_id: str) -> Job | None:
        """Remove the queued job ``job_id`` and return it; ``None`` if it is not waiting."""
        with self._changed:
            for job in self._jobs:
                if job.id == job_id:
                    self._jobs.remove(job)
                    return job
            return None

    def queued_ids(self) -> list[str]:
        with self._changed:
            return [job.id for job in self._jobs]

    def close(self) -> list[Job]:
        """Stop handing out jobs; returns (and forgets) the ones still waiting."""
        with self._changed:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._changed.notify_all()
            return left
