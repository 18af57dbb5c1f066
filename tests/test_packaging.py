"""pyproject.toml asks for lower bounds; constraints.txt pins the releases make and CI install;
environment.yml lists the same packages and installs torch through pip with the same constraints."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FROM_PIP = {"torch", "torchvision"}  # environment.yml installs these with pip, at constraints.txt's releases


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_name(s): s.replace(" ", "") for s in specs}


def _environment() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs, pip = {}, []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            pip = list(item["pip"])
        elif _name(item) not in ("python", "pip"):
            specs[_name(item)] = item.replace(" ", "")
    return specs, pip


def _constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {_name(line): line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_environment_lists_the_same_packages_with_the_same_bounds():
    conda, _ = _environment()
    expected = {name: spec for name, spec in _pyproject().items() if name not in FROM_PIP}
    assert conda == expected


def test_environment_installs_the_package_with_the_constraints():
    _, pip = _environment()
    assert pip == ["-c constraints.txt", "-e ."]


def test_dependencies_take_lower_bounds_only():
    """An exact pin in pyproject.toml would replace Colab's own CUDA torch (a multi-GB download)."""
    for spec in _pyproject().values():
        requirement = Requirement(spec)
        assert all(s.operator == ">=" for s in requirement.specifier), (
            f"{spec}: use a lower bound, pin in constraints.txt"
        )


def test_constraints_pin_exactly_the_tested_torch_within_the_bounds():
    pins, deps = _constraints(), _pyproject()
    assert pins == {"torch": "torch==2.14.1", "torchvision": "torchvision==0.29.1"}
    for name, pin in pins.items():
        version = pin.split("==")[1]
        assert Requirement(deps[name]).specifier.contains(version), f"{pin} is outside pyproject's {deps[name]}"


def test_make_and_ci_install_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[dev]'" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()
