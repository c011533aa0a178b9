"""Generates the protobuf types from proto/retrace/v1/*.proto before the package is built.

Run by `pip install .` and `pip install -e .` (setuptools' build_py, editable installs
included). The output, `src/retrace_sdk/_pb/`, is not checked in; `tests/test_generated.py`
checks that what is installed matches the proto. To regenerate by hand:
`python setup.py generate_proto` (needs grpcio-tools).
"""

import pathlib
import sys

from setuptools import Command, setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from generate_proto import generate  # noqa: E402


class GenerateProto(Command):
    description = "generate src/retrace_sdk/_pb from proto/retrace/v1/*.proto"
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        generate()


class BuildPy(build_py):
    def run(self):
        generate()
        super().run()


setup(cmdclass={"build_py": BuildPy, "generate_proto": GenerateProto})
