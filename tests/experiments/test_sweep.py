"""experiments.sweep: sweep files, point expansion and naming, validation, resume, failure
isolation, kill-and-rerun (the owned point processes: test_ownership.py). Most tests run
a stand-in for notebooks/02_train.ipynb (same parameters, no training: it writes a metrics.json
computed from its parameters), so a point takes a few seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from experiments import sweep as sweep_module
from experiments.files import read_json
from experiments.points import notebook_parameters, notebook_values
from experiments.sweep import load_sweep, point_name, point_status, run_sweep

ROOT = Path(__file__).resolve().parents[2]
TRAIN_NOTEBOOK = ROOT / "notebooks" / "02_train.ipynb"
#: The parameters of notebooks/02_train.ipynb that the sweeps pass (its parameters cell is this contract).
CONTRACT = {
    "dataset",
    "data_dir",
    "backbone",
    "width_mult",
    "cam",
    "losses",
    "lam",
    "form",
    "group_size",
    "loss_params",
    "batch_size",
    "epochs",
    "seeds",
    "device",
    "amp",
    "out_dir",
    "check_claims",
}

PARAMETERS = """dataset = "digits"  # dataset
data_dir = "../data"  # data folder
backbone = "resnet18"  # backbone
width_mult = 0.125  # width
cam = True  # channel attention module
losses = ["cc"]  # losses
lam = None  # weight of the extra term
form = None  # CC-Loss form
group_size = None  # CC statistic group size
loss_params = {}  # other loss hyperparameters
batch_size = 32  # batch size
epochs = 1  # epochs
seeds = [0]  # seeds
device = "cpu"  # device
amp = False  # bf16 autocast
out_dir = "../runs/standin"  # folder of the run directories
check_claims = True  # assert the default run's claims (a sweep turns this off)
sleep_s = 0.0  # stand-in only: seconds to wait before writing the metrics
fail = False  # stand-in only: raise instead of finishing (unless <sweep folder>/HEALED exists)
die = False  # stand-in only: kill the process that started this kernel (a crashing sweep worker), same"""

BODY = """import json, os, time
from pathlib import Path


def write_json(path, data):  # atomic, like ccloss.runtime.atomic.write_json (no torch import: a fast kernel)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


for loss in losses:
    for seed in seeds:
        run = Path(out_dir) / f"{loss}{'' if cam else '_nocam'}_seed{seed}"  # experiments.comparison.run_name
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "attempts.txt", "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        if (run / "metrics.json").exists() and json.loads((run / "metrics.json").read_text())["status"] == "complete":
            continue
        config = dict(dataset=dataset, backbone=backbone, width_mult=width_mult, cam=cam, loss=loss, lam=lam,
                      form=form, group_size=group_size, loss_params=loss_params, batch_size=batch_size,
                      epochs=epochs, seed=seed, out=str(run))
        write_json(run / "config.json", config)
        write_json(run / "metrics.json", {"status": "running", "history": [], "final": None})
        healed = (Path(out_dir).parent / "HEALED").exists()  # the test's "bug fixed" switch (and no sleep)
        time.sleep(0 if healed else sleep_s)
        if die and not healed:
            import signal
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
        if fail and not healed:
            raise RuntimeError(f"stand-in failure for {loss} seed {seed}")
        acc = 90.0 + (lam or 0.0) + seed / 2
        final = {"test_acc": acc, "best_test_acc": acc, "test_intra_inter": 0.5 - (lam or 0.0) / 10, "epochs": epochs}
        write_json(run / "metrics.json", {"status": "complete", "history": [final], "final": final})
print("done")"""


def make_standin_notebook(path, parameters: str = PARAMETERS, body: str = BODY) -> Path:
    path = Path(path)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in for 02_train"), cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return make_standin_notebook(tmp_path_factory.mktemp("nb") / "standin.ipynb")


def write_sweep(folder: Path, notebook: Path, **spec) -> Path:
    data = {"name": "demo", "notebook": str(notebook), **spec}
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args, cwd=ROOT, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
        **kwargs,
    )


def attempts(point_dir: Path) -> int:
    files = list(point_dir.glob("*/attempts.txt"))
    assert len(files) == 1, files
    return len(files[0].read_text().split())


def check_consistent(sweep_dir: Path) -> dict:
    """Every point is either done (marker + config + point.json complete) or has no marker."""
    states = {}
    for point_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        marker = point_dir / "metrics.json"
        if marker.exists():
            metrics = read_json(marker)  # parses: never half-written
            assert metrics["status"] == "complete" and metrics["final"]
            assert read_json(point_dir / "point.json")["status"] == "complete"
            assert (point_dir / "config.json").exists()
            states[point_dir.name] = "done"
        else:
            states[point_dir.name] = "not done"
    return states


# --------------------------------------------------------------------------------------------
# parsing, expansion, naming
# --------------------------------------------------------------------------------------------


def test_grid_is_crossed_and_seeds_expanded(tmp_path, standin):
    path = write_sweep(
        tmp_path,
        standin,
        fixed={"epochs": 2, "loss": "cc"},
        grid={"lam": [0, 0.5], "batch_size": [16, 32]},
        seeds=[0, 1],
    )
    sweep = load_sweep(path)
    points = sweep.expand()
    assert len(points) == 2 * 2 * 2
    assert [p.name for p in points[:3]] == [
        "lam=0,batch_size=16,seed=0",
        "lam=0,batch_size=16,seed=1",
        "lam=0,batch_size=32,seed=0",
    ]
    assert points[0].parameters == {"epochs": 2, "loss": "cc", "lam": 0, "batch_size": 16, "seed": 0}
    assert points[0].group == {"lam": 0, "batch_size": 16}
    assert sweep.varied == ["lam", "batch_size"]
    assert sweep.notebook == standin.resolve()


def test_points_crossed_with_grid_and_per_point_seeds(tmp_path, standin):
    path = write_sweep(
        tmp_path,
        standin,
        points=[{"loss": "ce", "cam": False, "seeds": [0]}, {"loss": "cc", "cam": True}],
        grid={"backbone": ["vgg16", "resnet18"]},
        seeds=[0, 1, 2],
    )
    names = [p.name for p in load_sweep(path).expand()]
    assert names[:2] == ["loss=ce,cam=false,backbone=vgg16,seed=0", "loss=ce,cam=false,backbone=resnet18,seed=0"]
    assert len(names) == 2 * 1 + 2 * 3
    assert "loss=cc,cam=true,backbone=resnet18,seed=2" in names


def test_point_names_are_stable_and_safe():
    assert point_name({"lam": 0.5, "seed": 1}) == "lam=0.5,seed=1"
    assert point_name({"lam": 1.0}) == point_name({"lam": 1}) == "lam=1"
    assert point_name({"cam": False, "form": None}) == "cam=false,form=none"
    assert point_name({"loss_params": {"squared": False}}) == "loss_params=squared-false"
    assert point_name({"data_dir": "../a b/c"}) == "data_dir=.._a_b_c"
    assert point_name({}) == "default"
    long = point_name({"x": "y" * 300})
    assert len(long) <= 150 and long == point_name({"x": "y" * 300})


def test_single_point_without_grid_or_seeds(tmp_path, standin):
    points = load_sweep(write_sweep(tmp_path, standin, fixed={"epochs": 1})).expand()
    assert [(p.name, p.parameters) for p in points] == [("default", {"epochs": 1})]


def test_overrides_replace_values_where_they_appear(tmp_path, standin):
    path = write_sweep(
        tmp_path,
        standin,
        fixed={"epochs": 2},
        grid={"lam": [0, 1]},
        seeds=[0, 1, 2],
        points=[{"loss": "cc"}, {"loss": "ce"}],
    )
    sweep = load_sweep(path, {"epochs": 5, "lam": 0.5, "seeds": [7], "batch_size": 8})
    assert sweep.fixed == {"epochs": 5, "batch_size": 8}
    assert sweep.grid == {"lam": [0.5]} and sweep.seeds == [7]
    assert [p.name for p in sweep.expand()] == ["loss=cc,lam=0.5,seed=7", "loss=ce,lam=0.5,seed=7"]
    # overriding a point key makes the points identical: they collapse into one
    assert [p.name for p in load_sweep(path, {"loss": "cc"}).expand()] == [
        "loss=cc,lam=0,seed=0",
        "loss=cc,lam=0,seed=1",
        "loss=cc,lam=0,seed=2",
        "loss=cc,lam=1,seed=0",
        "loss=cc,lam=1,seed=1",
        "loss=cc,lam=1,seed=2",
    ]


# --------------------------------------------------------------------------------------------
# bad sweep files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"grd": {"lam": [1]}}, "unknown key(s) ['grd']; valid: name, description, notebook"),
        ({"fixed": {"lamda": 1.0}}, "unknown notebook parameter(s) ['lamda']"),
        ({"grid": {"epoch": [1, 2]}}, "valid: dataset, data_dir, backbone"),
        ({"points": [{"los": "cc"}]}, "unknown notebook parameter(s) ['los']"),
        ({"grid": {"lam": 0.5}}, "`grid` must map each parameter to a non-empty list"),
        ({"seeds": "0"}, "`seeds` must be a non-empty list of integers"),
        ({"fixed": {"seeds": [0, 1]}}, "use the top-level `seeds:` list"),
        ({"fixed": {"out_dir": "x"}}, "`out_dir` is set by the sweep"),
        ({"points": [{"lam": 1}, {"lam": 1.0}]}, "several points share the name(s) ['lam=1']"),
        ({"fixed": {"loss": "cross_entropy"}}, "unknown loss 'cross_entropy'; valid: ce, cc"),
        ({"fixed": {"dataset": "cifar10"}}, "unknown dataset 'cifar10'"),
        ({"paper": {"table": "lambdas"}}, "paper.table must be one of losses, cam, lambda, batch_size"),
        ({"paper": {"table": "lambda", "match": {"lam": "lam"}}}, "lacks; its columns: lambda, dataset, backbone"),
        ({"paper": {"table": "lambda", "baselin": {}}}, "unknown key(s) ['baselin'] in `paper`"),
    ],
)
def test_bad_sweep_files_say_what_is_wrong(tmp_path, standin, spec, message):
    path = write_sweep(tmp_path, standin, **spec)
    with pytest.raises(ValueError) as error:
        load_sweep(path)
    assert message in str(error.value)


def test_unknown_parameter_lists_the_notebooks_parameters(tmp_path, standin):
    with pytest.raises(ValueError) as error:
        load_sweep(write_sweep(tmp_path, standin, fixed={"lr": 0.1}))
    text = str(error.value)
    import papermill

    for name in papermill.inspect_notebook(str(standin)):
        assert name in text
    assert "['lr']" in text


def test_missing_notebook_missing_file_and_bad_yaml(tmp_path, standin):
    with pytest.raises(ValueError, match="notebook 'notebooks/nope.ipynb' not found"):
        load_sweep(write_sweep(tmp_path, Path("notebooks/nope.ipynb")))
    with pytest.raises(ValueError, match="not found"):
        load_sweep(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_sweep(bad)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="is a mapping"):
        load_sweep(tmp_path / "list.yaml")


def test_notebook_without_parameters_cell_or_out_dir(tmp_path):
    bare = tmp_path / "bare.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, str(bare))
    with pytest.raises(ValueError, match="no cell tagged `parameters`"):
        load_sweep(write_sweep(tmp_path, bare))
    no_out = make_standin_notebook(tmp_path / "no_out.ipynb", parameters="epochs = 1  # epochs")
    with pytest.raises(ValueError, match="no `out_dir` parameter"):
        load_sweep(write_sweep(tmp_path, no_out))


def test_cli_reports_bad_files_with_exit_code_2(tmp_path, standin):
    result = cli("sweep", str(write_sweep(tmp_path, standin, fixed={"lamda": 1})), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2 and "unknown notebook parameter(s) ['lamda']" in result.stderr
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------
# running: resume, failures, kill and rerun
# --------------------------------------------------------------------------------------------


def test_sweep_runs_every_point_and_skips_them_on_rerun(tmp_path, standin):
    path = write_sweep(tmp_path, standin, fixed={"loss": "cc"}, grid={"lam": [0.0, 1.0]}, seeds=[0, 1])
    sweep = load_sweep(path)
    lines = []
    result = run_sweep(sweep, tmp_path / "runs", jobs=2, log=lines.append)
    assert result.ok and sorted(result.done) == sorted(p.name for p in sweep.expand()) and not result.skipped
    sweep_dir = tmp_path / "runs" / "demo"
    assert set(check_consistent(sweep_dir).values()) == {"done"}
    point_dir = sweep_dir / "lam=1,seed=1"
    assert sorted(p.name for p in point_dir.iterdir()) == [
        ".lock",
        "cc_seed1",
        "config.json",
        "events.log",
        "log.txt",
        "metrics.json",
        "notebook.ipynb",
        "point.json",
    ]
    assert [line.split()[-1] for line in (point_dir / "events.log").read_text().splitlines()] == ["start", "complete"]
    assert read_json(point_dir / "metrics.json")["final"]["test_acc"] == 90.0 + 1.0 + 0.5
    record = read_json(point_dir / "point.json")
    assert (
        record["status"] == "complete"
        and record["values"] == {"lam": 1.0, "seed": 1}
        and record["run_dir"] == "cc_seed1"
    )
    executed = nbformat.read(str(point_dir / "notebook.ipynb"), as_version=4)
    assert executed.metadata.papermill.parameters["losses"] == ["cc"]
    assert executed.metadata.papermill.parameters["seeds"] == [1]
    assert executed.metadata.papermill.parameters["out_dir"] == str(point_dir.resolve())
    assert executed.metadata.papermill.parameters["check_claims"] is False  # a point reports, it does not judge
    assert read_json(sweep_dir / "sweep.json")["varied"] == ["lam"]
    assert any(line.startswith("[4/4]") for line in lines)

    again = run_sweep(load_sweep(path), tmp_path / "runs", jobs=1, log=lines.append)
    assert again.ok and not again.done and len(again.skipped) == 4
    assert all(attempts(sweep_dir / p.name) == 1 for p in sweep.expand())


def test_failed_or_dying_point_is_reported_and_does_not_stop_the_others(tmp_path, standin):
    """A notebook that raises and a kernel that kills its worker each fail only their own point."""
    path = write_sweep(
        tmp_path, standin, points=[{"lam": 1.0, "fail": True}, {"lam": 0.0, "die": True}, {"lam": 2.0}], seeds=[0]
    )
    result = cli("sweep", str(path), "--out", str(tmp_path / "runs"), "--jobs", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "RuntimeError: stand-in failure for cc seed 0" in result.stdout
    assert "2 failed" in result.stdout and "FAILED lam=1,fail=true,seed=0" in result.stdout
    assert "FAILED lam=0,die=true,seed=0: the point process exited with code -9" in result.stdout
    sweep_dir = tmp_path / "runs" / "demo"
    assert check_consistent(sweep_dir) == {
        "lam=0,die=true,seed=0": "not done",
        "lam=1,fail=true,seed=0": "not done",
        "lam=2,seed=0": "done",
    }
    failed = sweep_dir / "lam=1,fail=true,seed=0"
    assert read_json(failed / "point.json")["error"] == "RuntimeError: stand-in failure for cc seed 0"
    assert point_status(failed) == "failed"
    assert (failed / "notebook.ipynb").exists()  # the executed notebook, with the error in it
    # a rerun retries only the failed points
    again = cli("sweep", str(path), "--out", str(tmp_path / "runs"), "--dry-run")
    assert "[failed] lam=1,fail=true,seed=0" in again.stdout and "[  done] lam=2,seed=0" in again.stdout
    (sweep_dir / "HEALED").touch()
    again = run_sweep(load_sweep(path), tmp_path / "runs", log=lambda m: None)
    assert again.ok and again.skipped == ["lam=2,seed=0"] and len(again.done) == 2
    assert attempts(sweep_dir / "lam=2,seed=0") == 1 and attempts(failed) == 2


def test_changed_parameters_are_refused_not_mixed(tmp_path, standin):
    path = write_sweep(tmp_path, standin, grid={"lam": [0.0]}, seeds=[0], fixed={"epochs": 1})
    assert run_sweep(load_sweep(path), tmp_path / "runs", log=lambda m: None).ok
    with pytest.raises(ValueError, match=r"other parameters: lam=0,seed=0 \(epochs: 1 -> 2\)"):
        run_sweep(load_sweep(path, {"epochs": 2}), tmp_path / "runs", log=lambda m: None)
    # a parameter that does not change results (the device) is not a change
    assert run_sweep(load_sweep(path, {"device": "auto"}), tmp_path / "runs", log=lambda m: None).skipped


def test_dry_run_lists_points_and_runs_nothing(tmp_path, standin):
    path = write_sweep(tmp_path, standin, grid={"lam": [0.0, 1.0]}, seeds=[0])
    result = cli("sweep", str(path), "--out", str(tmp_path / "runs"), "--dry-run")
    assert result.returncode == 0
    assert "[  todo] lam=0,seed=0" in result.stdout and "[  todo] lam=1,seed=0" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "fixed, message",
    [
        ({"lam": float("nan")}, "point lam=0,seed=0: lam must be"),
        ({"epochs": 0}, "point lam=0,seed=0: epochs must be a positive integer, got 0"),
        ({"batch_size": -1}, "point lam=0,seed=0: batch_size must be a positive integer, got -1"),
        ({"width_mult": 0}, "point lam=0,seed=0: width_mult must be"),
    ],
)
def test_dry_run_validates_every_value_as_a_run_would(tmp_path, standin, fixed, message):
    """issue 26 item 5: each point's TrainConfig is built and validated before anything runs."""
    grid = {"lam": [0.0]} if "lam" not in fixed else {}
    path = write_sweep(tmp_path, standin, fixed={"loss": "cc", **fixed}, grid=grid, seeds=[0])
    if "lam" in fixed:  # the nan sits in a grid value: the point's name says which
        path = write_sweep(tmp_path, standin, fixed={"loss": "cc"}, grid={"lam": [0.0, float("nan")]}, seeds=[0])
        message = "point lam=nan,seed=0: lam must be"
    result = cli("sweep", str(path), "--out", str(tmp_path / "runs"), "--dry-run")
    assert result.returncode == 2 and message in result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()


def test_jobs_2_finishes_a_sweep_as_one_process_does(tmp_path, standin):
    path = write_sweep(tmp_path, standin, fixed={"loss": "cc"}, grid={"lam": [0.0, 1.0]}, seeds=[0, 1])
    for jobs, out in (("1", "one"), ("2", "two")):
        result = cli("sweep", str(path), "--out", str(tmp_path / out), "--jobs", jobs, "--report")
        assert result.returncode == 0 and "4 run, 0 already complete, 0 failed" in result.stdout, result.stderr
    one, two = ((tmp_path / out / "demo" / "report.csv").read_text() for out in ("one", "two"))
    assert one == two and one.count("\n") == 3  # header + two groups


def _sweep_process(path: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", "sweep", str(path), "--out", str(out), "--jobs", "1", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_point_index_runs_one_point_as_a_job_array_task(tmp_path, standin):
    path = write_sweep(tmp_path, standin, grid={"lam": [0.0, 1.0]}, seeds=[0])
    out = tmp_path / "runs"
    outputs = []
    for task in ("1", "1", "0"):  # task 1 twice: the second finds it done
        result = cli("sweep", str(path), "--out", str(out), "--point", task)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout)
    assert "1 points, 0 already complete, 1 to run" in outputs[0] and "1 points, 1 already complete" in outputs[1]
    assert set(check_consistent(out / "demo").values()) == {"done"}
    assert all(attempts(out / "demo" / name) == 1 for name in ("lam=0,seed=0", "lam=1,seed=0"))
    bad = cli("sweep", str(path), "--out", str(out), "--point", "2")
    assert bad.returncode == 2 and "--point 2 is out of range: the sweep has points 0 to 1" in bad.stderr


def test_killed_sweep_reruns_without_double_counting(tmp_path, standin):
    """SIGKILL the whole sweep (process group) while a point runs, then rerun it."""
    path = write_sweep(tmp_path, standin, fixed={"sleep_s": 1.5}, grid={"lam": [0.0, 1.0]}, seeds=[0, 1])
    out = tmp_path / "runs"
    sweep_dir = out / "demo"
    process = _sweep_process(path, out)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # wait until one point is done and the next is training
            done = [p for p in sweep_dir.glob("*/metrics.json")] if sweep_dir.exists() else []
            running = (
                [p for p in sweep_dir.glob("*/*/metrics.json") if read_json(p)["status"] == "running"]
                if sweep_dir.exists()
                else []
            )
            if done and running:
                break
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail("the sweep never reached its second point")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(2.5)  # orphaned kernels notice their parent is gone within a second and exit
    states = check_consistent(sweep_dir)
    finished_before = sorted(name for name, state in states.items() if state == "done")
    assert 1 <= len(finished_before) < 4

    result = cli("sweep", str(path), "--out", str(out), "--jobs", "2", "--report")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(finished_before)} already complete" in result.stdout
    assert set(check_consistent(sweep_dir).values()) == {"done"} and len(check_consistent(sweep_dir)) == 4
    for name in finished_before:  # not run again
        assert attempts(sweep_dir / name) == 1
    table = (sweep_dir / "report.csv").read_text()
    assert "| 0 | 2 | 90.25 ± 0.35 |" in (sweep_dir / "report.md").read_text()
    assert table.count("\n") == 3  # header + two groups: no point counted twice


# --------------------------------------------------------------------------------------------
# the repository's sweep files
# --------------------------------------------------------------------------------------------

PAPER_FILES = ["paper_table1_losses", "paper_cam", "paper_lambda", "paper_batch_size", "paper_group_size"]
SMALL_FILES = ["small_losses", "small_cam", "small_lambda", "small_batch_size", "small_group_size", "small_forms"]


@pytest.mark.parametrize("name", PAPER_FILES + SMALL_FILES)
def test_repository_sweep_files_parse(name):
    # names of datasets, losses, ... are checked here; the names of 02's parameters in the contract test below
    sweep = load_sweep(ROOT / "sweeps" / f"{name}.yaml", check_notebook=False)
    assert sweep.name == name and sweep.notebook == TRAIN_NOTEBOOK.resolve()
    assert set(notebook_values(sweep.expand()[0].parameters, list(CONTRACT))) <= CONTRACT
    points = sweep.expand()
    assert points and all(p.values.get("seed") is not None for p in points)
    for group in {json.dumps(p.group, sort_keys=True) for p in points}:  # every group has >= 2 seeds
        assert sum(json.dumps(p.group, sort_keys=True) == group for p in points) >= 2
    if name.startswith("paper_"):
        assert sweep.fixed["epochs"] == 300 and sweep.fixed["width_mult"] == 1.0
        assert sweep.fixed["device"] == "cuda" and sweep.fixed["amp"] is True
        datasets = sweep.grid.get("dataset", [sweep.fixed.get("dataset")])
        assert set(datasets) <= {"mnist", "cifar100", "cars196"}
    else:  # the CPU sweeps: the embedded real MNIST at the budget of notebook 02's default run
        assert (sweep.fixed["dataset"], sweep.fixed["width_mult"], sweep.fixed["epochs"]) == ("mnist5k", 0.25, 3)


def test_paper_table1_has_every_loss_backbone_and_dataset():
    sweep = load_sweep(ROOT / "sweeps" / "paper_table1_losses.yaml", check_notebook=False)
    from ccloss.losses import LOSSES

    groups = {(p.values["loss"], p.values["backbone"], p.values["dataset"]) for p in sweep.expand()}
    assert len(groups) == len(LOSSES) * 2 * 3
    cams = {p.values["loss"]: p.values["cam"] for p in sweep.expand()}
    assert cams == {**{loss: False for loss in LOSSES if loss != "cc"}, "cc": True}
    assert sum(1 for p in sweep.expand() if p.values["loss"] == "cc") == 5 * 6


def run_one_real_point(tmp_path, notebook) -> Path:
    path = write_sweep(
        tmp_path,
        notebook,
        name="real",
        fixed={"dataset": "digits", "width_mult": 0.125, "loss": "cc", "epochs": 1, "batch_size": 64, "device": "cpu"},
        seeds=[0],
    )
    result = cli("sweep", str(path), "--out", str(tmp_path / "runs"), "--report")
    assert result.returncode == 0, result.stdout + result.stderr
    point_dir = tmp_path / "runs" / "real" / "seed=0"
    metrics = read_json(point_dir / "metrics.json")
    assert metrics["status"] == "complete" and metrics["final"]["epochs"] == 1
    assert read_json(point_dir / "config.json")["width_mult"] == 0.125
    assert (point_dir / "cc_seed0" / "checkpoint.pt").exists() and (point_dir / "notebook.ipynb").exists()
    assert "1 of 1 points complete" in result.stdout
    return point_dir


@pytest.mark.slow
def test_one_real_point_through_the_training_notebook(tmp_path):
    run_one_real_point(tmp_path, Path("notebooks/02_train.ipynb"))


def test_training_notebook_has_the_sweep_contract():
    """Every parameter the sweeps pass must be visible to papermill: a cell tagged `parameters`, and no
    second '=' on a line (papermill skips such a line, e.g. a comment saying 'None = the whole batch')."""
    found = set(notebook_parameters(TRAIN_NOTEBOOK))
    assert found >= CONTRACT, f"missing from 02's parameters cell as papermill sees it: {sorted(CONTRACT - found)}"


def test_committed_results_match_their_sweep_files():
    """results/<name>/ is what run_or_read reads: complete, and run with the sweep file's parameters."""
    results = ROOT / "results"
    folders = {p for p in results.iterdir() if (p / "sweep.json").exists()}
    small = {p for p in folders if p.name.startswith("small_")}
    # the notebooks read these: 03 the five ablations, 05 the loss comparison; 06 the study's stages
    assert {p.name for p in small} == {
        f"small_{n}" for n in ("lambda", "batch_size", "group_size", "cam", "forms", "losses")
    }
    assert {p.name for p in folders - small} <= {
        "study_budget",
        "study_screen",
        "study_finalists",
        "study_test",
        "study_followup",
        "study_combined",
        "study_combined_test",
        "study_part5_short",
        "study_part5_screen",
        "study_part5_finalists",
        "study_part5_test",
        "study_part5_test_measures",
    }
    for folder in sorted(folders):
        sweep = load_sweep(ROOT / "sweeps" / f"{folder.name}.yaml", check_notebook=False)
        status = [point_status(folder / p.name, p) for p in sweep.expand()]
        if folder in small:
            assert all(s == "done" for s in status), folder
        else:  # a study stage may still be running: what is exported is finished or failed, never half
            exported = [p for p in sweep.expand() if (folder / p.name).exists()]
            assert exported and all(point_status(folder / p.name, p) in ("done", "failed") for p in exported), folder
        command = (folder / "COMMAND.txt").read_text()  # made by `python -m ccloss sweep` before the move
        assert command.startswith((f"python -m experiments sweep sweeps/{folder.name}.yaml",
                                   f"python -m ccloss sweep sweeps/{folder.name}.yaml"))  # fmt: skip
        assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.ipynb"))


def test_run_or_read_reads_finished_results_else_runs(tmp_path, standin):
    path = write_sweep(tmp_path, standin, grid={"lam": [0.0]}, seeds=[0])
    lines = []
    # nothing anywhere: it runs (into runs_dir)
    folder = sweep_module.run_or_read(path, tmp_path / "runs", tmp_path / "results", run=False, log=lines.append)
    assert folder == (tmp_path / "runs" / "demo").resolve() and "no finished results to read; running it" in lines[0]
    # committed results elsewhere are read when runs_dir has none, with their provenance
    (tmp_path / "runs" / "demo").rename(tmp_path / "committed")
    (tmp_path / "results").mkdir()
    (tmp_path / "committed").rename(tmp_path / "results" / "demo")
    (tmp_path / "results" / "demo" / "COMMAND.txt").write_text("python -m experiments sweep demo.yaml\n")
    lines.clear()
    folder = sweep_module.run_or_read(path, tmp_path / "runs", tmp_path / "results", run=False, log=lines.append)
    assert folder == tmp_path / "results" / "demo"
    assert lines == [
        "reading demo from " + str(folder) + ": 1 point, all complete (made by: python -m experiments sweep demo.yaml)"
    ]
    # results of other parameters are not read: the sweep runs
    changed = write_sweep(tmp_path, standin, grid={"lam": [0.0]}, seeds=[0], fixed={"epochs": 3})
    lines.clear()
    folder = sweep_module.run_or_read(changed, tmp_path / "runs", tmp_path / "results", run=False, log=lines.append)
    assert folder == (tmp_path / "runs" / "demo").resolve() and "running it" in lines[0]


# --------------------------------------------------------------------------------------------
# labelled points: `label` names a point instead of its values
# --------------------------------------------------------------------------------------------


def test_labelled_points_are_named_by_label_grid_values_and_seed(tmp_path, standin):
    path = write_sweep(
        tmp_path,
        standin,
        fixed={"epochs": 1},
        grid={"dataset": ["digits", "mnist5k"]},
        points=[
            {"label": "strong", "loss": "cc", "lam": 0.1, "loss_params": {"normalize": "unit"}, "seeds": [3, 4]},
            {"label": "ce_cam", "loss": "ce"},
            {"loss": "cc", "lam": 1.0},  # no label: named by its values
        ],
        seeds=[0],
    )
    sweep = load_sweep(path)  # the standin has no `label` parameter: labels are not passed to the notebook
    points = sweep.expand()
    assert [p.name for p in points] == [
        "label=strong,dataset=digits,seed=3",
        "label=strong,dataset=digits,seed=4",
        "label=strong,dataset=mnist5k,seed=3",
        "label=strong,dataset=mnist5k,seed=4",
        "label=ce_cam,dataset=digits,seed=0",
        "label=ce_cam,dataset=mnist5k,seed=0",
        "loss=cc,lam=1,dataset=digits,seed=0",
        "loss=cc,lam=1,dataset=mnist5k,seed=0",
    ]
    first = points[0]
    assert first.values == {"label": "strong", "dataset": "digits", "seed": 3}
    assert first.group == {"label": "strong", "dataset": "digits"}
    assert first.parameters == {
        "epochs": 1,
        "loss": "cc",
        "lam": 0.1,
        "loss_params": {"normalize": "unit"},
        "dataset": "digits",
        "seed": 3,
    }
    assert all("label" not in p.parameters and "seeds" not in p.parameters for p in points)
    assert points[4].parameters == {"epochs": 1, "loss": "ce", "dataset": "digits", "seed": 0}
    assert sweep.varied == ["label", "dataset", "loss", "lam"]
    recorded = sweep.to_dict()
    assert recorded["points"][0]["label"] == "strong"  # the file's points as written
    assert recorded["expanded"][0] == {"name": first.name, "values": first.values, "parameters": first.parameters}


def test_labelled_point_keeps_its_name_when_a_value_is_overridden(tmp_path, standin):
    path = write_sweep(tmp_path, standin, points=[{"label": "a", "lam": 0.1}, {"label": "b", "lam": 0.3}], seeds=[0])
    sweep = load_sweep(path, {"lam": 0.5, "seeds": [1, 2]})
    assert [p.name for p in sweep.expand()] == ["label=a,seed=1", "label=a,seed=2", "label=b,seed=1", "label=b,seed=2"]
    assert {p.parameters["lam"] for p in sweep.expand()} == {0.5}


def test_labelled_points_in_a_dry_run(tmp_path, standin):
    path = write_sweep(tmp_path, standin, points=[{"label": "x+y", "lam": 0.1}], seeds=[0, 1])
    lines = []
    result = run_sweep(load_sweep(path), out=tmp_path / "runs", dry_run=True, log=lines.append)
    assert lines[1:] == ["  [  todo] label=x+y,seed=0", "  [  todo] label=x+y,seed=1"]
    assert result.ok and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "points, message",
    [
        (
            [{"label": "a", "lam": 0.1}, {"label": "a", "lam": 0.3}],
            "several points share the name(s) ['label=a,seed=0']",
        ),
        (
            [{"label": "a/b", "lam": 0.1}],
            "points[0].label must be a plain name (letters, digits, . _ - +), got 'a/b'",
        ),
        ([{"lam": 0.1}, {"label": "two words"}], "points[1].label must be a plain name"),
        ([{"label": ""}], "points[0].label must be a plain name"),
        ([{"label": 3}], "points[0].label must be a plain name (letters, digits, . _ - +), got 3"),
        ([{"label": "a,b"}], "points[0].label must be a plain name"),  # "," and "=" would break point names
        ([{"label": None}], "got None"),
        ([{"label": ["a"]}], "got ['a']"),
    ],
)
def test_bad_labels_say_what_is_wrong(tmp_path, standin, points, message):
    path = write_sweep(tmp_path, standin, points=points, seeds=[0])
    with pytest.raises(ValueError) as error:
        load_sweep(path)
    assert message in str(error.value)


def test_study_sweep_files_with_labels_parse():
    for name in ("study_screen", "study_finalists"):
        sweep = load_sweep(ROOT / "sweeps" / f"{name}.yaml")  # with 02's parameter names checked
        points = sweep.expand()
        labels = [p["label"] for p in sweep.points]
        assert len(set(labels)) == len(labels)
        assert all(p.name.startswith("label=") and "label" not in p.parameters for p in points)
        assert {p.values["label"] for p in points} == set(labels)
        assert sweep.varied[:2] == ["label", "dataset"]
