"""The wire format, settings checks and byte-output writing of lr_bridge, without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lowlight_raw.options import EnhanceOptions
from lr_bridge.output import write_new_file
from lr_bridge.protocol import (
    BAD_FRAMES,
    BAD_HEADER,
    BAD_JSON,
    HEADER_TOO_LARGE,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    UNKNOWN_TYPE,
    UNSUPPORTED_VERSION,
    ProtocolError,
    encode,
    parse_reply,
    parse_request,
)
from lr_bridge.settings import SettingsError, check_endpoint, endpoint_is_local, load_config, pick, pick_model


def header(**fields) -> bytes:
    return json.dumps({"version": PROTOCOL_VERSION, "id": "r1", **fields}).encode()


def code_of(frames: list[bytes]) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_request(frames)
    return caught.value.code


def test_every_request_type_round_trips_through_encode():
    for message_type, fields in [("ping", {}), ("status", {}), ("shutdown", {}), ("cancel", {"job": "abc"})]:
        request = parse_request(encode(message_type, "req-7", **fields))
        assert (request.type, request.id, request.job) == (message_type, "req-7", fields.get("job"))


def test_enhance_with_paths_and_options():
    request = parse_request(encode(
        "enhance", "r", files=[{"path": "/photos/a.dng"}, {"path": "/photos/b.dng"}],
        options={"format": "tiff", "ev": 3.5, "strength": 0.25, "output_dir": "/out", "overwrite": True,
                 "linear": True, "model": "fast"},
    ))
    enhance = request.enhance
    assert [f.path for f in enhance.files] == ["/photos/a.dng", "/photos/b.dng"]
    assert enhance.options == EnhanceOptions("tiff", 3.5, 0.25, Path("/out"), True, True, "fast")
    assert not enhance.as_bytes


def test_enhance_with_bytes_maps_frames_to_names():
    frames = encode("enhance", "r", (b"first", b"second"),
                    files=[{"name": "x/b.dng", "frame": 2}, {"name": "a.dng", "frame": 1}])
    enhance = parse_request(frames).enhance
    assert [(f.name, f.data) for f in enhance.files] == [("x/b.dng", b"second"), ("a.dng", b"first")]
    assert enhance.as_bytes and enhance.options == EnhanceOptions(), "absent options are the defaults"


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"\xff\xfe"], BAD_JSON),
        ([b"{not json"], BAD_JSON),
        ([b"[1, 2]"], BAD_HEADER),
        ([b"x" * (MAX_HEADER_BYTES + 1)], HEADER_TOO_LARGE),
        ([json.dumps({"type": "ping", "id": "a"}).encode()], UNSUPPORTED_VERSION),
        ([json.dumps({"version": 2, "type": "ping", "id": "a"}).encode()], UNSUPPORTED_VERSION),
        ([json.dumps({"version": True, "type": "ping", "id": "a"}).encode()], UNSUPPORTED_VERSION),
        ([json.dumps({"version": 1, "type": "ping"}).encode()], BAD_HEADER),
        ([json.dumps({"version": 1, "type": "ping", "id": ""}).encode()], BAD_HEADER),
        ([json.dumps({"version": 1, "type": "ping", "id": "a" * 129}).encode()], BAD_HEADER),
        ([header(type=5)], BAD_HEADER),
        ([header(type="launch")], UNKNOWN_TYPE),
        ([header(type="ping"), b"extra"], BAD_FRAMES),
        ([header(type="cancel")], BAD_HEADER),
        ([header(type="enhance")], BAD_HEADER),
        ([header(type="enhance", files=[])], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "relative.dng"}])], BAD_HEADER),
        ([header(type="enhance", files=[{"frame": 1, "name": "a.dng"}])], BAD_FRAMES),
        ([header(type="enhance", files=[{"frame": 1, "name": "a.dng"}, {"frame": 1, "name": "b"}]), b"x"], BAD_FRAMES),
        ([header(type="enhance", files=[{"path": "/a.dng"}]), b"unused"], BAD_FRAMES),
        ([header(type="enhance", files=[{"path": "/a.dng"}, {"frame": 1, "name": "b"}]), b"x"], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"format": "png"})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"strength": 1.5})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"ev": "3"})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"overwrite": 1})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"colour": "red"})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"linear": "yes"})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options={"model": "relative.pt"})], BAD_HEADER),
        ([header(type="enhance", files=[{"path": "/a.dng"}], options=[])], BAD_HEADER),
        ([header(type="enhance", files=[{"frame": 1, "name": "a"}], options={"output_dir": "/o"}), b"x"], BAD_HEADER),
    ],
)
def test_malformed_requests_get_the_right_error_code(frames, code):
    assert code_of(frames) == code


def test_errors_keep_the_request_id_when_it_is_readable():
    with pytest.raises(ProtocolError) as caught:
        parse_request([header(type="nope")])
    assert caught.value.request_id == "r1"


def test_parse_reply_checks_version_and_type():
    reply = parse_reply(encode("pong", "r", ready=True))
    assert (reply.type, reply.id, reply.header["ready"]) == ("pong", "r", True)
    with pytest.raises(ProtocolError):
        parse_reply([json.dumps({"version": 9, "type": "pong", "id": "r"}).encode()])
    with pytest.raises(ProtocolError):
        parse_reply(encode("ping", "r"))


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5599", True),
        ("tcp://127.0.0.1:*", True),
        ("tcp://localhost:5599", True),
        ("tcp://[::1]:5599", True),
        ("ipc:///tmp/lr.sock", True),
        ("tcp://0.0.0.0:5599", False),
        ("tcp://*:5599", False),
        ("tcp://192.168.1.20:5599", False),
        ("tcp://gpu-box:5599", False),
    ],
)
def test_endpoint_locality(endpoint, local):
    assert check_endpoint(endpoint) == endpoint
    assert endpoint_is_local(endpoint) is local


@pytest.mark.parametrize("endpoint", ["http://x:1", "tcp://127.0.0.1", "tcp://127.0.0.1:70000", "ipc://", "udp://a:1"])
def test_malformed_endpoints_are_refused(endpoint):
    with pytest.raises(SettingsError):
        check_endpoint(endpoint)


def test_write_new_file_never_overwrites_unless_asked(tmp_path):
    first = write_new_file(tmp_path, "a_lowlight.jpg", b"one")
    second = write_new_file(tmp_path, "a_lowlight.jpg", b"two")
    assert (first.name, second.name) == ("a_lowlight.jpg", "a_lowlight_1.jpg")
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    replaced = write_new_file(tmp_path, "a_lowlight.jpg", b"three", overwrite=True)
    assert replaced == first and first.read_bytes() == b"three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_lowlight.jpg", "a_lowlight_1.jpg"]


def test_write_new_file_takes_a_name_at_the_file_system_limit(tmp_path):
    name = "x" * 242 + "_lowlight.jpg"  # 255 bytes: the temporary name is shortened, the file's is not
    assert write_new_file(tmp_path, name, b"jpeg").name == name
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", ["../escape.jpg", "sub/a.jpg", "", ".."])
def test_write_new_file_refuses_names_that_are_not_plain(tmp_path, name):
    with pytest.raises(OSError):
        write_new_file(tmp_path / "out", name, b"x")
    assert not (tmp_path / "escape.jpg").exists()


def test_settings_come_from_flag_then_environment_then_config_file(tmp_path, monkeypatch):
    config_file = tmp_path / "bridge.toml"
    config_file.write_text('bind = "ipc:///tmp/from-config"\ndevice = "cpu"\nmodel = "~/models/sid.pt"\n')
    monkeypatch.setenv("LR_BRIDGE_CONFIG", str(config_file))
    monkeypatch.setenv("LR_BRIDGE_DEVICE", "cuda:1")
    monkeypatch.delenv("LR_BRIDGE_BIND", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config()
    assert pick(None, "bind", config) == "ipc:///tmp/from-config"
    assert pick("tcp://127.0.0.1:6000", "bind", config) == "tcp://127.0.0.1:6000"
    assert pick(None, "device", config, "auto") == "cuda:1"
    assert pick(None, "endpoint", config) is None
    assert pick_model(None, config) == str(tmp_path / "models" / "sid.pt")
    assert pick_model("fast", config) == "fast"


@pytest.mark.parametrize(("text", "complaint"), [("colour = 'red'", "unknown setting"), ("bind = 5", "must be a string"),
                                                 ("bind = ", "cannot read config")])
def test_a_bad_config_file_is_named_in_the_error(tmp_path, text, complaint):
    config_file = tmp_path / "bridge.toml"
    config_file.write_text(text + "\n")
    with pytest.raises(SettingsError, match=complaint) as caught:
        load_config(config_file)
    assert str(config_file) in str(caught.value)
    with pytest.raises(SettingsError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_every_request_type_has_exactly_one_daemon_handler() -> None:
    """The protocol's request table and the daemon's handler table name the same requests."""
    from lr_bridge.daemon import REQUEST_HANDLERS
    from lr_bridge.protocol import REQUEST_TYPES

    assert set(REQUEST_HANDLERS) == set(REQUEST_TYPES)
    assert all(callable(handler) for handler in REQUEST_HANDLERS.values())
