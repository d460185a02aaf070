"""The lr-bridge wire protocol (version 1): multipart frames, a JSON header, optional binary frames.

Every message is ``[header, blob, blob, …]``: ``header`` is a UTF-8 JSON object with at least
``version``, ``type`` and ``id``; blobs carry file bytes. :func:`parse_request` is what the daemon
runs on every message it receives: it either returns a validated :class:`Request` or raises
:class:`ProtocolError` carrying the error code to reply with. ``PROTOCOL.md`` documents it all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from lowlight_raw.options import EnhanceOptions

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 1 << 30  # the most file bytes one message may carry (a RAW is ~20–120 MB)
DEFAULT_MAX_HELD_BYTES = 2 << 30  # file bytes a daemon holds for its queued and running jobs, by default
MAX_FILES_PER_JOB = 10_000
MAX_ID_LENGTH = 128
HEARTBEAT_INTERVAL_S = 0.5  # the daemon sends a heartbeat per active job this often
HEARTBEAT_TIMEOUT_S = 4.0  # a client waiting on a job gives up after this much silence

REQUEST_TYPES = frozenset({"ping", "status", "enhance", "cancel", "shutdown"})
REPLY_TYPES = frozenset(
    {"pong", "status", "accepted", "progress", "result", "error", "done", "heartbeat", "ack"}
)

# Error codes (the ``code`` of an ``error`` message).
BAD_JSON = "bad_json"  # the header frame is not UTF-8 JSON
BAD_HEADER = "bad_header"  # not an object, a field missing or of the wrong type or value
HEADER_TOO_LARGE = "header_too_large"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_TYPE = "unknown_type"
BAD_FRAMES = "bad_frames"  # binary frames missing, unused or malformed
BAD_OPTIONS = "bad_options"  # the engine refuses the enhance options (e.g. EV out of its range)
UNKNOWN_JOB = "unknown_job"
SHUTTING_DOWN = "shutting_down"
PATHS_REFUSED = "paths_refused"  # a remote (CURVE) daemon only takes files as bytes
FILE_FAILED = "file_failed"  # the engine refused or failed one file; the job goes on
INTERNAL = "internal"  # an unexpected daemon fault while processing one file
ENGINE_FAILED = "engine_failed"  # the daemon could not load the engine and is stopping
TOO_LARGE = "too_large"  # one message carries more file bytes than the daemon may ever hold
BUSY = "busy"  # the daemon holds as many file bytes as it may: try again when jobs are done
FORBIDDEN = "forbidden"  # cancel of another client's job, or shutdown by a key that is not the owner's


class ProtocolError(Exception):
    """A message the daemon cannot accept; answered with an ``error`` of ``code``."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class InputFile:
    """One file of an ``enhance`` request: a daemon-side ``path`` or bytes sent along (``data``)."""

    name: str  # what events call the file: the path, or the client's name for sent bytes
    path: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class EnhanceRequest:
    """The validated body of an ``enhance`` request."""

    files: tuple[InputFile, ...]
    options: EnhanceOptions = EnhanceOptions()

    @property
    def as_bytes(self) -> bool:
        """Whether the files came as bytes (and so results go back as bytes)."""
        return self.files[0].data is not None

    @property
    def data_bytes(self) -> int:
        """How many bytes of files the request carries (0 for paths)."""
        return sum(len(f.data) for f in self.files if f.data is not None)


@dataclass(frozen=True)
class Request:
    """A validated request: its type and id, and the body of an ``enhance`` or ``cancel``."""

    type: str
    id: str
    enhance: EnhanceRequest | None = None
    job: str | None = None


def encode(message_type: str, request_id: str | None, blobs: tuple[bytes, ...] = (), **fields: Any) -> list[bytes]:
    """Frames of a message: the JSON header (``version``, ``type``, ``id``, ``fields``) then ``blobs``."""
    header = {"version": PROTOCOL_VERSION, "type": message_type, "id": request_id, **fields}
    return [json.dumps(header, separators=(",", ":"), allow_nan=False).encode(), *blobs]


def error_frames(code: str, message: str, request_id: str | None, **fields: Any) -> list[bytes]:
    """Frames of an ``error`` message."""
    return encode("error", request_id, code=code, message=message, **fields)


def decode_header(frame: bytes) -> dict[str, Any]:
    """The JSON object in a header frame; :class:`ProtocolError` if it is too large or not one."""
    if len(frame) > MAX_HEADER_BYTES:
        raise ProtocolError(HEADER_TOO_LARGE, f"header of {len(frame)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(frame.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(BAD_JSON, f"header is not UTF-8 JSON ({exc.__class__.__name__})") from exc
    if not isinstance(header, dict):
        raise ProtocolError(BAD_HEADER, f"header is a JSON {type(header).__name__}, not an object")
    return header


def _request_id(header: dict[str, Any]) -> str | None:
    value = header.get("id")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH else None


def parse_request(frames: list[bytes]) -> Request:
    """Validate a received message (without the ROUTER identity) into a :class:`Request`."""
    if not frames:
        raise ProtocolError(BAD_FRAMES, "empty message")
    header = decode_header(frames[0])
    request_id = _request_id(header)
    if header.get("version") != PROTOCOL_VERSION or isinstance(header.get("version"), bool):
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            f"protocol version {header.get('version')!r} is not supported (this daemon speaks {PROTOCOL_VERSION})",
            request_id,
        )
    if request_id is None:
        raise ProtocolError(BAD_HEADER, f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    message_type = header.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError(BAD_HEADER, "'type' must be a string", request_id)
    if message_type not in REQUEST_TYPES:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown request type {message_type[:40]!r}", request_id)
    blobs = tuple(frames[1:])
    if message_type == "enhance":
        return Request(message_type, request_id, enhance=_parse_enhance(header, blobs, request_id))
    if blobs:
        raise ProtocolError(BAD_FRAMES, f"'{message_type}' takes no binary frames, got {len(blobs)}", request_id)
    if message_type == "cancel":
        job = header.get("job")
        if not isinstance(job, str) or not 0 < len(job) <= MAX_ID_LENGTH:
            raise ProtocolError(BAD_HEADER, "'cancel' needs 'job': a job id string", request_id)
        return Request(message_type, request_id, job=job)
    return Request(message_type, request_id)


def _parse_enhance(header: dict[str, Any], blobs: tuple[bytes, ...], request_id: str) -> EnhanceRequest:
    def bad(message: str, code: str = BAD_HEADER) -> ProtocolError:
        return ProtocolError(code, message, request_id)

    entries = header.get("files")
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_FILES_PER_JOB:
        raise bad(f"'files' must be a list of 1 to {MAX_FILES_PER_JOB} entries")
    files = []
    used_frames: set[int] = set()
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad(f"files[{position}] must be an object")
        if "path" in entry:
            path = entry["path"]
            if not isinstance(path, str) or not PurePath(path).is_absolute() or "\0" in path:
                raise bad(f"files[{position}].path must be an absolute path string")
            files.append(InputFile(name=path, path=path))
        elif "frame" in entry:
            frame, name = entry["frame"], entry.get("name")
            if not isinstance(frame, int) or isinstance(frame, bool) or not 1 <= frame <= len(blobs):
                raise bad(f"files[{position}].frame must index one of the {len(blobs)} binary frames (1-based)", BAD_FRAMES)
            if frame in used_frames:
                raise bad(f"files[{position}].frame {frame} is used twice", BAD_FRAMES)
            if not isinstance(name, str) or not PurePath(name).name or "\0" in name or len(name) > 4096:
                raise bad(f"files[{position}].name must name the file the bytes came from")
            used_frames.add(frame)
            files.append(InputFile(name=name, data=blobs[frame - 1]))
        else:
            raise bad(f"files[{position}] needs 'path' or 'frame'")
    if len({f.data is not None for f in files}) > 1:
        raise bad("'files' mixes paths and bytes; send one kind per job")
    if len(used_frames) != len(blobs):
        raise bad(f"{len(blobs) - len(used_frames)} binary frame(s) are not referenced by 'files'", BAD_FRAMES)

    try:
        options = EnhanceOptions.from_wire(header.get("options", {}))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    if options.output_dir is not None and files[0].data is not None:
        raise bad("'output_dir' does not apply to files sent as bytes (results come back as bytes)")
    return EnhanceRequest(files=tuple(files), options=options)


@dataclass(frozen=True)
class Reply:
    """A message from the daemon, as the client reads it."""

    type: str
    id: str | None
    header: dict[str, Any]
    blobs: tuple[bytes, ...] = field(default=(), repr=False)


def parse_reply(frames: list[bytes]) -> Reply:
    """Validate a message from the daemon; :class:`ProtocolError` if it is not protocol version 1."""
    header = decode_header(frames[0]) if frames else {}
    if header.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(UNSUPPORTED_VERSION, f"daemon speaks protocol version {header.get('version')!r}")
    message_type = header.get("type")
    if message_type not in REPLY_TYPES:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {str(message_type)[:40]!r} from the daemon")
    request_id = header.get("id")
    return Reply(message_type, request_id if isinstance(request_id, str) else None, header, tuple(frames[1:]))
