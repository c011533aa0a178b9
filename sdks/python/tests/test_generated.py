"""The installed protobuf types are what proto/retrace/v1/*.proto generates now (a proto changed
since the last install shows here: reinstall with `pip install -e sdks/python`)."""

from __future__ import annotations

import pathlib
import sys
import tempfile

import retrace_sdk

HERE = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from generate_proto import generate  # noqa: E402


def test_the_installed_types_match_the_proto():
    installed = pathlib.Path(retrace_sdk.__file__).parent / "_pb"
    with tempfile.TemporaryDirectory() as fresh:
        generate(pathlib.Path(fresh))
        for name in ("envelope_pb2.py", "envelope_pb2.pyi"):
            now = (pathlib.Path(fresh) / "retrace" / "v1" / name).read_text()
            was = (installed / "retrace" / "v1" / name).read_text()
            assert now == was, f"{name} is stale: reinstall the SDK (pip install -e sdks/python)"
