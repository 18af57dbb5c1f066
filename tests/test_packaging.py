"""environment.yml and pyproject.toml list the same dependencies with the same pins."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_name(s): s.replace(" ", "") for s in specs}


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = {}
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for spec in item["pip"]:
                if not spec.startswith("-e"):
                    specs[_name(spec)] = spec.replace(" ", "")
        elif _name(item) not in ("python", "pip"):
            specs[_name(item)] = item.replace(" ", "")
    return specs


def test_same_dependencies_and_pins():
    assert _environment() == _pyproject()


def test_torch_pins_are_exact():
    deps = _pyproject()
    assert deps["torch"] == "torch==2.14.1"
    assert deps["torchvision"] == "torchvision==0.29.1"


def test_environment_installs_the_package_in_editable_mode():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert "-e ." in pip
