#!/usr/bin/env python3
"""Build a Python policy into an Airlock policy component.

    python sdk/python/build.py policies/approval-rules-py                  # -> ./approval-rules-py.wasm
    python sdk/python/build.py policies/approval-rules-py -o /tmp/ar-py.wasm
    airlock policy test /tmp/ar-py.wasm policies/approval-rules/cases.toml

A policy directory holds one module (`NAME.py`, besides `test_*.py` and
`conftest.py`) whose class is marked `@airlock.export`. This script stages
that module, the `airlock` package beside this file and a two-line app
module in a temporary directory, and runs

    componentize-py -d WIT -w policy componentize --stub-wasi -p STAGE airlock_policy_app -o OUT

`--stub-wasi` replaces every WASI import with a trapping stub: Airlock links
no WASI, so the component imports only `airlock:policy/host@0.2.0`, like a
Rust policy. componentize-py pre-initializes the interpreter (imports the
app, hence the policy module) at build time.

Needs componentize-py (`pip install componentize-py==0.25.1`, the version
this was tested with). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COMPONENTIZE_PY_VERSION = "0.25.1"
"""The componentize-py this SDK was tested with."""
WORLD = "policy"
APP_MODULE = "airlock_policy_app"
SDK = Path(__file__).resolve().parent


class BuildError(Exception):
    """Why a policy did not build; the message is for the person building."""


def find_wit(explicit: Path | None) -> Path:
    """The contract: `--wit`, else `wit/` beside the SDK (a copy written by
    `airlock policy new`), else the repository's `wit/`."""
    for candidate in (explicit, SDK / "wit", SDK.parent.parent / "wit"):
        if candidate is not None and (candidate / "policy.wit").is_file():
            return candidate
    raise BuildError("no wit/policy.wit found beside the SDK; pass --wit DIR")


def find_module(directory: Path, explicit: str | None) -> str:
    """The policy's module: `--module`, else the one `*.py` in `directory`
    that is not a test."""
    if explicit:
        if not (directory / f"{explicit}.py").is_file():
            raise BuildError(f"{directory}: no {explicit}.py")
        return explicit
    modules = sorted(
        path.stem for path in directory.glob("*.py")
        if not path.name.startswith("test_") and path.name != "conftest.py"
    )
    if len(modules) != 1:
        found = ", ".join(f"{name}.py" for name in modules) or "none"
        raise BuildError(f"{directory}: expected one policy module besides tests (found {found}); "
                         "name it with --module")
    return modules[0]


def find_componentize_py() -> list[str]:
    """componentize-py: beside this Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "componentize-py"
    found = str(beside) if beside.is_file() else shutil.which("componentize-py")
    if found is None:
        raise BuildError("componentize-py not found: "
                         f"`pip install componentize-py=={COMPONENTIZE_PY_VERSION}`")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout.split()
    if version[-1:] != [COMPONENTIZE_PY_VERSION]:
        print(f"warning: {' '.join(version) or found} is not the tested "
              f"componentize-py {COMPONENTIZE_PY_VERSION}", file=sys.stderr)
    return [found]


def stage(directory: Path, module: str, into: Path) -> None:
    """Copy what the component needs into `into`: the SDK's `airlock`
    package, the policy's non-test modules, and the app module."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "test_*.py", "conftest.py")
    shutil.copytree(SDK / "airlock", into / "airlock", ignore=ignore)
    for path in directory.iterdir():
        if path.suffix == ".py" and not path.name.startswith("test_") \
                and path.name != "conftest.py":
            shutil.copy2(path, into / path.name)
    (into / f"{APP_MODULE}.py").write_text(
        f'"""The app componentize-py wraps (written by airlock build.py)."""\n'
        f"import {module}  # noqa: F401  (its @airlock.export registers the policy)\n"
        "from airlock._component import Judge  # noqa: F401\n"
    )


def build(directory: Path, output: Path, module: str | None = None, wit: Path | None = None,
          quiet: bool = False) -> Path:
    """Build the policy in `directory` into the component `output`."""
    if not directory.is_dir():
        raise BuildError(f"{directory}: not a directory")
    module = find_module(directory, module)
    command = find_componentize_py()
    with tempfile.TemporaryDirectory(prefix="airlock-py-build-") as staging:
        stage(directory, module, Path(staging))
        command += ["-d", str(find_wit(wit)), "-w", WORLD]
        if quiet:
            command.append("--quiet")
        command += ["componentize", "--stub-wasi", "-p", staging, APP_MODULE,
                    "-o", str(output)]
        # Only the staged files: a venv's site-packages is not searched.
        environment = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
        if subprocess.run(command, env=environment).returncode != 0:
            raise BuildError(f"componentize-py failed: {' '.join(command)}")
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="the policy's directory")
    parser.add_argument("-o", "--output", type=Path,
                        help="the component to write (default: ./DIRECTORY-NAME.wasm)")
    parser.add_argument("--module", help="the policy's module, if the directory has several")
    parser.add_argument("--wit", type=Path, help="the directory holding policy.wit")
    parser.add_argument("-q", "--quiet", action="store_true")
    arguments = parser.parse_args()
    directory = arguments.directory.resolve()
    output = arguments.output or Path(f"{directory.name}.wasm")
    try:
        build(directory, output, arguments.module, arguments.wit, arguments.quiet)
    except BuildError as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    if not arguments.quiet:
        print(f"{output}: {output.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
