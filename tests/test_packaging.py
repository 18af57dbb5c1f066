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


#: What someone who wants only the loss should not get with `pip install ccloss` (issue 20).
NOTEBOOK_ONLY = {"papermill", "ipykernel", "pyyaml", "seaborn", "jupyterlab", "nbval", "nbgrader"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject() -> dict[str, str]:
    """Every package of the dependencies and the extras (the dev extra's reference to ccloss's own
    extras left out)."""
    project = _project()
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {
        _name(s): s.replace(" ", "") for s in specs if _name(s) != "ccloss[notebooks,timm]" and _name(s) != "ccloss"
    }


def test_the_core_needs_no_notebook_tools_and_dev_takes_every_extra():
    project = _project()
    core = {_name(s) for s in project["dependencies"]}
    assert not core & NOTEBOOK_ONLY, core & NOTEBOOK_ONLY
    extras = project["optional-dependencies"]
    assert {"papermill", "ipykernel", "pyyaml"} <= {_name(s) for s in extras["notebooks"]}
    assert "ccloss[notebooks,timm]" in extras["dev"]


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


BLOCKER = """
import importlib.abc, sys
BLOCKED = {"papermill", "nbformat", "nbclient", "ipykernel", "IPython", "jupyter_client", "jupyter_core",
           "jupyterlab", "yaml", "seaborn", "nbval", "nbgrader"}
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Blocked())
"""

WITHOUT_NOTEBOOK_TOOLS = """
import tempfile
import torch
import ccloss
from ccloss.cli import main

model = ccloss.build_model("resnet18", num_classes=10, in_channels=1, width_mult=0.125)
x, y = torch.randn(8, 1, 16, 16), torch.arange(8) % 4
out = model(x)
loss = torch.nn.functional.cross_entropy(out.logits, y) + 0.1 * ccloss.CCLoss()(out.attention, y)
loss.backward()
assert torch.isfinite(loss) and model.cam.fc1.weight.grad.abs().sum() > 0
with tempfile.TemporaryDirectory() as out_dir:
    metrics = ccloss.fit(ccloss.TrainConfig(dataset="digits", width_mult=0.125, epochs=1, out=out_dir, quiet=True))
assert metrics["status"] == "complete" and "test_knn_acc" in metrics["final"]
assert main(["sweep", "sweeps/small_lambda.yaml", "--dry-run"]) == 2
print("OK", sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED))
"""


def test_the_loss_and_the_loop_work_without_papermill_and_jupyter():
    """`import ccloss`, a CC-Loss step and a training run with every notebook tool unimportable; the sweep
    command then says which extra to install."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + WITHOUT_NOTEBOOK_TOOLS], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK []"), result.stdout
    assert "pip install 'ccloss[notebooks]'" in result.stderr and "missing: papermill, yaml, ipykernel" in result.stderr
