"""How ``lr-bridge enhance`` shows a job: JSON lines for programs, a progress bar for people.

The JSON lines are a fixed contract (the darktable plugin reads them); see ``PROTOCOL.md``,
section "Client output".
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from tqdm import tqdm

Event = dict[str, Any]


class JsonLines:
    """One JSON object per line on stdout, flushed after each line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self._stream.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Nothing to tidy up (for symmetry with :class:`HumanReport`)."""


class HumanReport:
    """A progress bar over all files on stderr; one line per output on stdout, errors on stderr."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        kind = event["event"]
        if kind == "accepted":
            self._bar = tqdm(total=event["files"], unit="file", file=sys.stderr, dynamic_ncols=True, disable=None,
                             bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} files [{elapsed}<{remaining}]")
        elif kind == "progress" and self._bar is not None:
            self._bar.n = event["index"] + float(event["fraction"] or 0.0)
            self._bar.refresh()
        elif kind == "result":
            ev = event["ev"]
            ev_text = f"EV {ev:+.2f}, " if isinstance(ev, (int, float)) else ""
            self._print(f"{event['file']} → {event['output']} ({ev_text}{event['seconds']:.1f} s)", sys.stdout)
        elif kind == "error":
            self._print(f"lr-bridge: error: {event['message']}", sys.stderr)
        elif kind == "done":
            self.close()
            parts = [f"{event['ok']} enhanced"]
            if event["failed"]:
                parts.append(f"{event['failed']} failed")
            if event["cancelled"]:
                parts.append("cancelled")
            print(f"lr-bridge: {', '.join(parts)}", file=sys.stderr, flush=True)

    def _print(self, line: str, stream: TextIO) -> None:
        if self._bar is not None:
            self._bar.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
