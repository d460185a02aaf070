"""Fuzz: a few hundred mutated DNGs (fixed seed) through the command line and through one daemon.

Damaged IFD entries, flipped bytes and truncations of real DNG fixtures. Zero tracebacks, each
failure one ``error:`` line naming its file, the batch goes on, no daemon death or wedge, no file
left behind, sources unchanged, and no damaged entry copied into an output (exiftool -validate).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURE_EXIF
from daemon_helpers import Mailbox, launch, terminate
from fuzz_dng import write_mutants
from helpers import file_sha256, finished_outputs
from lowlight_raw.testing.synthetic import DngSpec, dark_exposure, test_scene, write_cfa_dng

CASES = 160
JOBS = 4  # the daemon gets the cases as this many bytes jobs


@pytest.fixture(scope="module")
def mutants(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    bases = []
    layouts = [("RGGB", (0, 0, 0, 0)), ("GBRG", (4, 6, 2, 2)), ("BGGR", (0, 0, 0, 0))]
    for index, (pattern, margins) in enumerate(layouts):  # with the fixtures' EXIF and GPS: something to damage
        spec = DngSpec(pattern=pattern, margins=margins, exif=dict(FIXTURE_EXIF))
        active = dark_exposure(test_scene(90, 122), spec, 100.0, 2e-4, 2e-7, np.random.default_rng(index))
        bases.append(write_cfa_dng(folder / f"base_{index}.dng", active, spec))
    paths = write_mutants(bases, CASES, folder / "cases")
    return paths, {path: file_sha256(path) for path in paths}


def test_fuzzed_raws_through_the_command_line(mutants, tiny_weights, tmp_path):
    paths, digests = mutants
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "lowlight_raw.cli", "enhance", "-q", "--model", str(tiny_weights),
                           "-o", str(out), *map(str, paths)], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    failed_names = [re.match(r"error: .*/(fuzz_\d+\.dng): \S", line)[1] for line in failed]
    assert len(set(failed_names)) == len(failed_names)  # one line per failed file
    outputs = finished_outputs(out)  # (and no partial file)
    assert sorted(failed_names + [o.replace("_lowlight.dng", ".dng") for o in outputs]) == [p.name for p in paths]
    assert done.returncode == (1 if failed else 0) and done.stderr.splitlines()[-1] == f"{len(outputs)} enhanced, {len(failed)} failed"
    assert 0 < len(failed) < CASES  # the mutations hurt some files, not all
    assert all(file_sha256(path) == digest for path, digest in digests.items())
    if shutil.which("exiftool") is None:
        pytest.skip("exiftool is not installed: the outputs' IFD entries were not validated")
    validated = subprocess.run(["exiftool", "-validate", "-warning", "-a", "-q", *(str(out / o) for o in outputs)],
                               capture_output=True, text=True, timeout=300)
    serious = [line for line in validated.stdout.splitlines() if line.startswith("Warning") and "[minor]" not in line]
    assert serious == []


def test_fuzzed_raws_through_one_daemon(mutants, tiny_weights, tmp_path):
    paths, digests = mutants
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    running = launch(tmp_path / "state", tiny_weights, env={"TMPDIR": str(scratch)})
    try:
        with Mailbox(running.connection) as client:
            for start in range(0, CASES, CASES // JOBS):
                batch = paths[start: start + CASES // JOBS]
                files = [{"name": path.name, "frame": i + 1} for i, path in enumerate(batch)]
                request_id = client.send("enhance", tuple(p.read_bytes() for p in batch), files=files,
                                         options={"format": "dng"})
                events = [e for e in client.until_done(request_id, timeout_s=120) if e.type != "heartbeat"]
                finals = [e for e in events if e.type in ("result", "error")]
                assert [e.header["index"] for e in finals] == list(range(len(batch)))
                assert all(e.header["code"] == "file_failed" and e.header["file"] in e.header["message"]
                           for e in finals if e.type == "error")
                assert (events[-1].header["ok"] + events[-1].header["failed"], events[-1].header["cancelled"]) == (len(batch), False)
            assert client.request("ping", 10).header["ready"] is True
        assert running.process.poll() is None
        assert list(scratch.iterdir()) == []  # every scratch file and folder was removed
    finally:
        terminate(running.process)
    assert all(file_sha256(path) == digest for path, digest in digests.items())
