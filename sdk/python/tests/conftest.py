"""Fixtures: the bindings componentize-py generates for `wit/policy.wit`
(its `bindings` command writes them as importable stubs), for the tests
that check the SDK against the contract and drive the component glue
natively. Skipped where componentize-py is not installed."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parent.parent


def _build_script():
    spec = importlib.util.spec_from_file_location("airlock_build", SDK / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bindings(tmp_path_factory):
    """The directory holding the generated `wit_world` package, on sys.path."""
    build = _build_script()
    try:
        command = build.find_componentize_py()
    except build.BuildError as error:
        pytest.skip(str(error))
    directory = tmp_path_factory.mktemp("bindings") / "out"
    subprocess.run(command + ["-d", str(build.find_wit(None)), "-w", build.WORLD,
                              "bindings", str(directory)], check=True, capture_output=True)
    sys.path.insert(0, str(directory))
    yield directory
    sys.path.remove(str(directory))
