"""What `pip install ccloss` brings and loads: torch, torchvision and numpy for the base install, the
rest in extras; `from ccloss import CCLoss` loads the loss's own modules only; the installed package
stays thin (issue 24). pyproject.toml asks for lower bounds, constraints.txt pins what make and CI
install, environment.yml lists the same packages."""

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
FROM_PIP = {
    "torch",
    "torchvision",
    "timm",
    "pytorch-metric-learning",
}  # from pip: conda-forge's would pull a second torch
#: Issue 24: the installed package holds the method and what the notebooks call, in at most this many lines.
MAX_PACKAGE_LINES = 4000


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject() -> dict[str, str]:
    """Every package of the dependencies and the extras, without ccloss's references to its own extras."""
    project = _project()
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {_name(s): s.replace(" ", "") for s in specs if _name(s) != "ccloss"}


def _extra_packages(extra: str) -> set[str]:
    """The packages an extra installs, following its references to ccloss's other extras."""
    extras, found = _project()["optional-dependencies"], set()
    for spec in extras[extra]:
        if _name(spec) == "ccloss":
            for inner in re.search(r"\[(.*)\]", spec).group(1).split(","):
                found |= _extra_packages(inner.strip())
        else:
            found.add(_name(spec))
    return found


def test_the_base_install_is_torch_torchvision_and_numpy():
    assert {_name(s) for s in _project()["dependencies"]} == {"torch", "torchvision", "numpy"}


def test_colab_takes_a_lean_notebooks_extra_and_dev_takes_every_extra():
    notebooks = _extra_packages("notebooks")
    assert {"scikit-learn", "mlxtend", "pytorch-metric-learning", "matplotlib", "pandas"} <= notebooks
    assert not notebooks & {"jupyterlab", "ipykernel", "notebook"}, "Colab has its own Jupyter"
    assert {"papermill", "filelock", "submitit"} <= _extra_packages("experiments")
    every = set().union(*(_extra_packages(e) for e in _project()["optional-dependencies"] if e != "dev"))
    assert every <= _extra_packages("dev")


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
    assert pip[0] == "-c constraints.txt" and pip[1].startswith("-e .")


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


def test_the_installed_package_is_thin():
    lines = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in (ROOT / "ccloss").rglob("*.py")}
    assert sum(lines.values()) <= MAX_PACKAGE_LINES, sorted(lines.items(), key=lambda item: -item[1])[:10]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_importing_the_loss_loads_the_loss_only():
    """(tqdm is left out of the heavy packages: torch imports it itself where it is installed.)"""
    result = _run(
        "import sys\nfrom ccloss import CCLoss\n"
        "print(sorted(m for m in sys.modules if m.startswith('ccloss')))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn', 'matplotlib', 'scipy'}))"
    )
    assert result.returncode == 0, result.stderr
    loaded, heavy = result.stdout.strip().splitlines()
    assert loaded == "['ccloss', 'ccloss.cc_forms', 'ccloss.cc_loss', 'ccloss.options']", loaded
    assert heavy == "[]", heavy


def _closure(names: list[str]) -> set[str]:
    """The distributions ``names`` need, their requirements followed (extras and other platforms left out)."""
    from importlib.metadata import PackageNotFoundError, distribution

    seen, todo = set(), list(names)
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        seen.add(name)
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _base_install(folder: Path) -> Path:
    """A folder holding only what `pip install ccloss` installs: links to the site-packages entries of
    ccloss's dependencies and of everything they need, and to ccloss itself."""
    from importlib.metadata import distribution

    folder.mkdir()
    for name in _closure([_name(s) for s in _project()["dependencies"]]):
        dist = distribution(name)
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}:
            if (site / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(site / top)
    (folder / "ccloss").symlink_to(ROOT / "ccloss")
    return folder


def test_the_base_install_brings_torch_torchvision_numpy_and_their_own_needs_only():
    names = _closure(["torch", "torchvision", "numpy"])
    assert {"torch", "torchvision", "numpy"} <= names
    assert not names & {"scikit-learn", "pandas", "scipy", "matplotlib", "mlxtend", "tqdm", "papermill"}, names


ENGINEER = """
import tempfile, warnings
import torch
import ccloss

model = ccloss.build_model("resnet18", num_classes=4, in_channels=1, width_mult=0.125)
x, y = torch.randn(16, 1, 16, 16), torch.arange(16) % 4
out = model(x)
loss = torch.nn.functional.cross_entropy(out.logits, y) + 0.1 * ccloss.CCLoss()(out.attention, y)
loss.backward()
assert torch.isfinite(loss) and model.cam.fc1.weight.grad.abs().sum() > 0
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
with tempfile.TemporaryDirectory() as out_dir, warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    config = ccloss.TrainConfig(dataset="mine", epochs=1, out=out_dir, quiet=True, device="cpu")
    metrics = ccloss.fit(config, model=model, train_loader=loader, eval_loader=loader, reference_loader=loader)
assert metrics["status"] == "complete", metrics
assert any("ccloss[analysis]" in str(w.message) for w in caught), [str(w.message) for w in caught]
print("OK", sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "pandas", "matplotlib", "scipy", "tqdm"}))
"""


def test_the_loss_the_model_and_the_loop_need_only_the_base_install(tmp_path):
    """A CC-Loss step and `fit` on loaders of one's own in an interpreter that sees only the base install
    (no site-packages, `python -S`); the class measures are skipped with a warning naming the extra."""
    site = _base_install(tmp_path / "site")
    command = [sys.executable, "-S", "-c", "import sys\n" + ENGINEER]
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK []"), result.stdout
