"""Papermill sweeps: a YAML grid in, one executed notebook and one ``metrics.json`` per point out.

A sweep file (``sweeps/*.yaml``)::

    name: small_lambda                  # output folder: runs/<name>/
    description: what it measures       # optional, free text
    notebook: notebooks/02_train.ipynb  # relative to the repository root (or to this file)
    fixed: {dataset: digits, epochs: 2} # notebook parameters shared by every point
    grid: {lam: [0, 0.5, 1]}            # lists, crossed (optional)
    points: [{loss: ce, cam: false}]    # explicit points (optional; crossed with grid if both);
                                        # a point's optional `label` names it instead of its values
    seeds: [0, 1, 2]                    # one point per seed (a point may carry its own `seeds`)
    paper: {table: lambda, match: {lambda: lam}}   # how `report` joins the paper's table

Each point is one training run: ``loss`` and ``seed`` are passed to notebook 02 as
``losses: [loss]`` and ``seeds: [seed]``. A point is named after what varies, e.g.
``lam=0.5,seed=1``, and runs into its own folder ``runs/<sweep>/<point>/``:

Each point folder holds ``point.json`` (parameters, status), ``notebook.ipynb``, the run directory, and,
written last and atomically, a copy of the run's ``metrics.json``: its presence marks the point done.

Exactly once comes from idempotent points, not from a scheduler of ours: a point is skipped when complete,
resumed from its checkpoint otherwise (notebook 02 calls ``fit(resume=True)``), and never run by two
processes at once (its file lock, :mod:`experiments.points`). ``--jobs N`` runs N points at once, each a
papermill subprocess owned by the sweep. A point another live process holds is waited for: the sweep runs
its other points first, then polls every :data:`WAIT_POLL_S` s until the lock is free, and skips the point
if that process finished it. Several machines: a SLURM job array (``--point``, :mod:`experiments.slurm`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import yaml
except ModuleNotFoundError as error:  # pragma: no cover - tested by tests/test_packaging.py in a subprocess
    raise ModuleNotFoundError(
        "the sweeps need the experiments extra (papermill, pyyaml, filelock): pip install -e '.[experiments]'"
    ) from error

import contextlib

from .files import METRICS_FILE, POINT_FILE, is_complete, read_json, write_json
from .notebooks import REPO_ROOT
from .points import INTERRUPTED, LOCKED, RESULT_FREE, SWEEP_ENV, is_locked, notebook_parameters, notebook_values

__all__ = [
    "SWEEP_KEYS",
    "PAPER_KEYS",
    "Sweep",
    "Point",
    "SweepResult",
    "load_sweep",
    "apply_overrides",
    "expand_points",
    "point_name",
    "format_value",
    "run_sweep",
    "run_or_read",
    "point_status",
]

#: Keys a sweep file may have.
SWEEP_KEYS = ("name", "description", "notebook", "fixed", "grid", "points", "seeds", "paper")
#: Keys of its ``paper`` section (see :mod:`experiments.report`).
PAPER_KEYS = ("table", "match", "stand_in", "baseline", "note")
SWEEP_FILE = "sweep.json"
WAIT_POLL_S = 2.0  #: how often a sweep looks again at a point another live process holds
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")  #: characters a sweep, point or label name may not hold


# --------------------------------------------------------------------------------------------
# Sweep files
# --------------------------------------------------------------------------------------------


@dataclass
class Point:
    """One training run of a sweep."""

    name: str  #: stable, file-name-safe, e.g. ``lam=0.5,seed=1``
    values: dict  #: what varies (grid/point values and the seed), in naming order
    parameters: dict  #: every notebook parameter the sweep passes (``out_dir`` added at run time)

    @property
    def group(self) -> dict:
        """The values without the seed: the points of one group differ only by seed."""
        return {k: v for k, v in self.values.items() if k != "seed"}


@dataclass
class Sweep:
    """A parsed sweep file (after ``-p`` overrides)."""

    name: str
    notebook: Path
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    points: list = field(default_factory=list)
    seeds: list | None = None
    paper: dict | None = None
    description: str = ""
    source: Path | None = None

    def expand(self) -> list[Point]:
        return expand_points(self)

    @property
    def varied(self) -> list[str]:
        """Keys that vary between groups (grid and point keys, in naming order; no seed)."""
        keys: list[str] = []
        for point in self.expand():
            for key in point.group:
                if key not in keys:
                    keys.append(key)
        return keys

    def to_dict(self) -> dict:
        """What ``runs/<sweep>/sweep.json`` records (enough for :mod:`ccloss.report`)."""
        points = self.expand()
        return {
            "name": self.name,
            "description": self.description,
            "notebook": _display_path(self.notebook),
            "source": _display_path(self.source) if self.source else None,
            "fixed": self.fixed,
            "grid": self.grid,
            "points": self.points,
            "seeds": self.seeds,
            "paper": self.paper,
            "varied": self.varied,
            "expanded": [{"name": p.name, "values": p.values, "parameters": p.parameters} for p in points],
        }


def _display_path(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}-{format_value(v)}" for k, v in value.items())
    return str(value)


def point_name(values: dict) -> str:
    """``{"lam": 0.5, "seed": 1}`` -> ``lam=0.5,seed=1`` (safe as a file name; long names hashed)."""
    if not values:
        return "default"
    name = ",".join(f"{k}={format_value(v)}" for k, v in values.items())
    name = NAME_UNSAFE.sub("_", name)
    if len(name) > 150:
        import hashlib

        name = name[:140] + "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    return data


def _resolve_notebook(notebook: str, source: Path | None) -> Path:
    path = Path(notebook)
    candidates = [path] if path.is_absolute() else [REPO_ROOT / path] + ([source.parent / path] if source else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ValueError(f"notebook {notebook!r} not found (looked for {tried}); paths are relative to the repository root")


def _check_file(data: dict, source: Path) -> None:
    """The shape of a sweep file: known keys, a plain name, mappings and lists where they belong."""
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid: {', '.join(SWEEP_KEYS)}")
    for key in ("name", "notebook"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"{source}: `{key}` (a string) is required")
    if NAME_UNSAFE.search(data["name"]) or data["name"] in (".", ".."):
        raise ValueError(f"{source}: name {data['name']!r} must be a plain folder name (letters, digits, . _ - = , +)")
    grid, points = data.get("grid") or {}, data.get("points") or []
    if not isinstance(data.get("fixed") or {}, dict):
        raise ValueError(f"{source}: `fixed` must be a mapping of notebook parameters")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"{source}: `grid` must map each parameter to a non-empty list of values")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ValueError(f"{source}: `points` must be a list of mappings")
    for i, p in enumerate(points):
        label = p.get("label")
        if "label" in p and (not isinstance(label, str) or not label or NAME_UNSAFE.search(label) or "," in label
                             or "=" in label):  # fmt: skip
            raise ValueError(
                f"{source}: points[{i}].label must be a plain name (letters, digits, . _ - +), got {p['label']!r}"
            )
    lists = [("seeds", data.get("seeds"))] + [(f"points[{i}].seeds", p.get("seeds")) for i, p in enumerate(points)]
    for where, seeds in lists:
        if seeds is not None and (
            not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds)  # no bools
        ):
            raise ValueError(f"{source}: `{where}` must be a non-empty list of integers")
    if data.get("paper") is not None:
        _check_paper(data["paper"], source)


def _check_points(sweep: Sweep, source: Path) -> list[Point]:
    """What the notebook decides (seeds, losses, out_dir) is not set by hand; point names differ."""
    for key in ("seeds", "losses"):
        if key in sweep.fixed or key in sweep.grid:
            raise ValueError(
                f"{source}: `{key}` cannot be fixed or gridded; use the top-level `seeds:` list and "
                f"one `loss` per point (each point is one training run)"
            )
    if "out_dir" in sweep.fixed or "out_dir" in sweep.grid or any("out_dir" in p for p in sweep.points):
        raise ValueError(f"{source}: `out_dir` is set by the sweep (runs/<sweep>/<point>/); do not set it")
    points = expand_points(sweep)
    names = [p.name for p in points]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{source}: several points share the name(s) {duplicates}; make the points differ")
    return points


def load_sweep(path: str | os.PathLike, overrides: dict | None = None, check_notebook: bool = True) -> Sweep:
    """Parse and validate a sweep file; ``overrides`` are ``-p NAME VALUE`` pairs (already parsed).

    Raises ValueError naming what is wrong: unknown keys, wrong types, a missing notebook, or
    parameter names the notebook does not have (with the valid ones).
    """
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"sweep file {source} not found")
    data = _read_yaml(source)
    _check_file(data, source)
    sweep = Sweep(
        name=data["name"], notebook=_resolve_notebook(data["notebook"], source), fixed=dict(data.get("fixed") or {}),
        grid=dict(data.get("grid") or {}), points=[dict(p) for p in data.get("points") or []],
        seeds=data.get("seeds"), paper=data.get("paper"), description=str(data.get("description") or "").strip(),
        source=source.resolve(),
    )  # fmt: skip
    if overrides:
        apply_overrides(sweep, overrides)
    points = _check_points(sweep, source)
    _check_configs(points, source)
    if check_notebook:
        _check_parameters(sweep, points)
    return sweep


def _check_paper(paper: Any, source: Path) -> None:
    from .paper import PAPER_TABLES, paper_table

    if not isinstance(paper, dict):
        raise ValueError(f"{source}: `paper` must be a mapping with keys {', '.join(PAPER_KEYS)}")
    unknown = sorted(set(paper) - set(PAPER_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} in `paper`; valid: {', '.join(PAPER_KEYS)}")
    if paper.get("table") not in PAPER_TABLES:
        raise ValueError(f"{source}: paper.table must be one of {', '.join(PAPER_TABLES)}, got {paper.get('table')!r}")
    columns = list(paper_table(paper["table"]).columns)
    for key in ("match", "stand_in", "baseline"):
        if not isinstance(paper.get(key) or {}, dict):
            raise ValueError(f"{source}: paper.{key} must be a mapping")
    for section in ("match", "stand_in"):
        bad = sorted(set(paper.get(section) or {}) - set(columns))
        if bad:
            raise ValueError(
                f"{source}: paper.{section} names column(s) {bad} that the paper's {paper['table']} "
                f"table lacks; its columns: {', '.join(columns)}"
            )


def apply_overrides(sweep: Sweep, overrides: dict) -> None:
    """``-p NAME VALUE``: replaces the value wherever NAME appears (seeds, grid, points, else fixed)."""
    for name, value in overrides.items():
        if name == "seeds":
            sweep.seeds = value if isinstance(value, list) else [value]
            for point in sweep.points:
                point.pop("seeds", None)
            continue
        placed = False
        if name in sweep.grid:
            sweep.grid[name] = value if isinstance(value, list) else [value]
            placed = True
        for point in sweep.points:
            if name in point:
                point[name] = value
                placed = True
        if not placed:
            sweep.fixed[name] = value
    # overriding a point key can make points identical: keep the first of each
    unique: list[dict] = []
    for point in sweep.points:
        if point not in unique:
            unique.append(point)
    sweep.points = unique


def expand_points(sweep: Sweep) -> list[Point]:
    """Points (x) grid (x) seeds, in file order; each point is one training run."""
    combos: list[dict] = [dict(zip(sweep.grid, values)) for values in itertools.product(*sweep.grid.values())]
    explicit = sweep.points or [{}]
    out: list[Point] = []
    for point in explicit:
        point = dict(point)
        seeds = point.pop("seeds", None) or sweep.seeds
        label = point.pop("label", None)
        for combo in combos:
            values = {**point, **{k: v for k, v in combo.items() if k not in point}}
            for seed in seeds if seeds is not None else [None]:
                run_values = dict(values)
                if seed is not None:
                    run_values["seed"] = seed
                parameters = dict(sweep.fixed)
                parameters.update({k: v for k, v in run_values.items()})
                for key, fixed in sweep.fixed.items():  # a point's dict (loss_params) adds to the fixed one's keys
                    if isinstance(fixed, dict) and isinstance(run_values.get(key), dict):
                        parameters[key] = {**fixed, **run_values[key]}
                if label is not None:  # named by its label, the grid values and the seed
                    run_values = {"label": label, **{k: v for k, v in run_values.items() if k not in point}}
                out.append(Point(point_name(run_values), run_values, parameters))
    return out


def _check_parameters(sweep: Sweep, points: list[Point]) -> None:
    valid = notebook_parameters(sweep.notebook)
    if not valid:
        raise ValueError(f"{_display_path(sweep.notebook)} has no cell tagged `parameters`; a sweep needs one")
    if "out_dir" not in valid:
        raise ValueError(
            f"{_display_path(sweep.notebook)} has no `out_dir` parameter; the sweep passes each point's folder in it"
        )
    used: set[str] = set()
    for point in points:
        used.update(notebook_values(point.parameters, list(valid)))
    unknown = sorted(used - set(valid))
    if unknown:
        raise ValueError(
            f"unknown notebook parameter(s) {unknown} for {_display_path(sweep.notebook)} "
            f"(in {sweep.source.name if sweep.source else 'the sweep'}); valid: {', '.join(valid)}"
        )


def point_config(parameters: dict):
    """The ccloss.TrainConfig a point's notebook run trains with: its parameters that are TrainConfig
    fields, ``train_options`` merged in (notebook 02's contract), TrainConfig's defaults elsewhere."""
    import dataclasses

    from ccloss.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {**(parameters.get("train_options") or {}), **parameters}
    return TrainConfig(**{k: v for k, v in values.items() if k in names})


def _check_configs(points: list[Point], source: Path) -> None:
    """Every value checked the way a run checks it, before anything runs: TrainConfig.validate()."""
    for point in points:
        try:
            point_config(point.parameters).validate()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: point {point.name}: {error}") from None


# --------------------------------------------------------------------------------------------
# Point status
# --------------------------------------------------------------------------------------------


def point_status(point_dir: Path, point: Point | None = None) -> str:
    """``done`` (complete marker), ``stale`` (done with other parameters), ``failed``, ``todo``."""
    point_dir = Path(point_dir)
    if is_complete(point_dir):
        if point is not None and _changed(point_dir, point):
            return "stale"
        return "done"
    try:
        if read_json(point_dir / POINT_FILE).get("status") == "failed":
            return "failed"
    except (OSError, ValueError):
        pass
    return "todo"


def _changed(point_dir: Path, point: Point) -> dict:
    try:
        recorded = read_json(point_dir / POINT_FILE).get("parameters", {})
    except (OSError, ValueError):
        return {}
    mine = json.loads(json.dumps(point.parameters))  # tuples -> lists, as recorded
    keys = (set(recorded) | set(mine)) - RESULT_FREE
    changed = {k: (recorded.get(k), mine.get(k)) for k in sorted(keys) if recorded.get(k) != mine.get(k)}
    if changed and set(changed) <= LOSS_KEYS and _same_loss(point_dir, point):
        return {}  # the loss's settings written out (e.g. form: ratio pinned when the default changed), same run
    return changed


LOSS_KEYS = frozenset({"form", "lam", "group_size", "loss_params"})  #: parameters that only choose the loss
#: Loss options added after runs were recorded, with the value those runs used (the fixed eps came first).
RECORDED_BEFORE = {"relative_eps": False}


def _same_loss(point_dir: Path, point: Point) -> bool:
    """Whether the loss the point would build has every hyperparameter its finished run recorded
    (metrics.json's ``loss_hparams``; options of :data:`RECORDED_BEFORE` it lacks read as their old value)."""
    try:
        recorded = read_json(point_dir / METRICS_FILE)["loss_hparams"]
        wanted = point_config(point.parameters).resolved_loss_hparams()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    recorded = {**{k: v for k, v in RECORDED_BEFORE.items() if k in wanted}, **recorded}
    return all(k in wanted and wanted[k] == v for k, v in recorded.items())


# --------------------------------------------------------------------------------------------
# Running a sweep
# --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    sweep_dir: Path
    done: list = field(default_factory=list)  #: names finished in this call
    skipped: list = field(default_factory=list)  #: names already complete (or finished by another process)
    failed: dict = field(default_factory=dict)  #: name -> error
    interrupted: list = field(default_factory=list)  #: names stopped by SIGTERM/SIGINT (a rerun resumes them)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def summary(self) -> str:
        lines = [
            f"sweep {self.sweep_dir.name}: {len(self.done)} run, {len(self.skipped)} already complete, "
            f"{len(self.failed)} failed, {self.seconds:.0f}s"
            + (f", {len(self.interrupted)} interrupted (rerun to resume)" if self.interrupted else "")
        ]
        for name, error in self.failed.items():
            lines.append(f"  FAILED {name}: {error}")
        if self.failed:
            lines.append(
                f"  (each point's executed notebook and log: {self.sweep_dir}/<point>/; rerun the same "
                f"command to retry the failed points, finished ones are skipped)"
            )
        return "\n".join(lines)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    """GPU ids for CUDA_VISIBLE_DEVICES (an existing CUDA_VISIBLE_DEVICES is respected)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - broken CUDA install
        return []


def slot_environments(jobs: int, gpus: list[str] | None = None, cores: int | None = None) -> list[dict]:
    """Environment of each of ``jobs`` slots: several GPUs: slot i gets GPU ``i % len(gpus)`` alone;
    ``max(1, cores // jobs)`` OMP/MKL threads, unless OMP_NUM_THREADS is already set."""
    threads = str(max(1, (cores or _cpu_count()) // max(1, jobs)))
    envs = []
    for slot in range(jobs):
        env: dict[str, str] = {}
        if "OMP_NUM_THREADS" not in os.environ:
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        if gpus and len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        envs.append(env)
    return envs


class _Owner:
    """The point processes of one sweep, each in a session of its own (so a terminal's Ctrl-C or a
    ``kill`` of the sweep's group reaches them once, through here). SIGTERM/SIGINT: no new point
    starts and each point's process gets SIGTERM (its run stops after the epoch, with a checkpoint);
    a second one: SIGKILL. ``kill -9`` of the sweep: each point dies with it (PR_SET_PDEATHSIG)."""

    def __init__(self, sweep_dir: Path, envs: list[dict]):
        self.sweep_dir, self.slots = sweep_dir, list(range(len(envs)))
        self.envs, self.children, self.signals = envs, set(), []
        self.guard, self.previous = threading.Lock(), {}

    def __enter__(self) -> _Owner:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame) -> None:
        self.signals.append(signum)
        if "SLURM_JOB_ID" in os.environ and len(self.signals) == 1:
            return  # SLURM signals every process of the job itself
        for child in list(self.children):
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGTERM if len(self.signals) == 1 else signal.SIGKILL)

    def run(self, point: Point, record: dict) -> int:
        """Run one point in its own process; its exit code (see :func:`experiments.points.main`)."""
        point_dir = self.sweep_dir / point.name
        with self.guard:
            if self.signals:
                return INTERRUPTED
            slot = self.slots.pop(0)
        env = {**os.environ, **self.envs[slot], SWEEP_ENV: str(point_dir), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        command = [sys.executable, "-m", "experiments.points", str(point_dir), str(os.getpid()), json.dumps(record)]
        try:
            with open(point_dir / "log.txt", "a") as log:
                child = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
                self.children.add(child)
                code = child.wait()
                self.children.discard(child)
        finally:
            with self.guard:
                self.slots.append(slot)
        return INTERRUPTED if code == -signal.SIGKILL and self.signals else code


def _record(sweep: Sweep, point: Point, point_dir: Path) -> dict:
    return {
        "sweep": sweep.name, "name": point.name, "values": point.values, "parameters": point.parameters,
        "notebook": _display_path(sweep.notebook), "notebook_path": str(sweep.notebook), "point_dir": str(point_dir),
    }  # fmt: skip


def _result_line(point_dir: Path, code: int) -> str:
    try:
        record = read_json(point_dir / POINT_FILE)
    except (OSError, ValueError):
        record = {}
    if code == 0 and is_complete(point_dir):
        final = read_json(point_dir / METRICS_FILE).get("final") or {}
        acc = "".join(f"  {key} {final[key]:.2f}" for key in ("test_acc", "val_acc") if key in final)
        return f"done in {record.get('seconds', 0):.1f}s{acc}"
    if code == INTERRUPTED:
        return "interrupted (its run stopped with a checkpoint; a rerun resumes it)"
    return f"FAILED: {record.get('error') or f'the point process exited with code {code} (see log.txt)'}"


def _collect(result: SweepResult, point: Point, code: int, counter: list, total: int, log) -> None:
    point_dir = result.sweep_dir / point.name
    if code == 0 and not is_complete(point_dir):
        code = 1
    if code == 0:
        result.done.append(point.name)
    elif code == INTERRUPTED:
        result.interrupted.append(point.name)
    else:
        line = _result_line(point_dir, code)
        result.failed[point.name] = line.removeprefix("FAILED: ")
    counter.append(point.name)
    log(f"[{len(counter)}/{total}] {point.name}: {_result_line(point_dir, code)}")


def _run_points(sweep: Sweep, owner: _Owner, todo: list[Point], result: SweepResult, log) -> list[Point]:
    """Run ``todo`` (``len(owner.envs)`` at a time); the points another live process holds."""
    held, counter = [], []
    with ThreadPoolExecutor(max_workers=len(owner.envs)) as pool:
        futures = [(p, pool.submit(owner.run, p, _record(sweep, p, result.sweep_dir / p.name))) for p in todo]
        for point, future in futures:
            code = future.result()
            if code == LOCKED:
                held.append(point)
            else:
                _collect(result, point, code, counter, len(todo), log)
    return held


def run_sweep(
    sweep: Sweep, out: str | os.PathLike = "runs", jobs: int = 1, dry_run: bool = False,
    log: Callable[[str], None] = print, point_index: int | None = None,
) -> SweepResult:  # fmt: skip
    """Run every point of ``sweep`` not yet complete into ``out/<sweep.name>/`` (only the
    ``point_index``-th of :meth:`Sweep.expand` when given: one task of a job array), ``jobs`` at a
    time, each in its own process. A failing point is recorded and the others go on; a point another
    live process holds is waited for (see the module's docstring)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    started = time.time()
    sweep_dir = Path(out).resolve() / sweep.name
    points = _selected(sweep.expand(), point_index)
    statuses = {p.name: point_status(sweep_dir / p.name, p) for p in points}
    _refuse_stale(sweep_dir, points, statuses)
    todo = [p for p in points if statuses[p.name] != "done"]
    result = SweepResult(sweep_dir, skipped=[p.name for p in points if statuses[p.name] == "done"])
    log(
        f"sweep {sweep.name}: {len(points)} points, {len(result.skipped)} already complete, {len(todo)} to run "
        f"({jobs} at a time) -> {sweep_dir}"
    )
    if dry_run:
        for point in points:
            running = statuses[point.name] != "done" and is_locked(sweep_dir / point.name)
            log(f"  [{'running' if running else statuses[point.name]:>6}] {point.name}")
        return result
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json(sweep_dir / SWEEP_FILE, sweep.to_dict())  # the same content from every process of the sweep
    for point in todo:
        (sweep_dir / point.name).mkdir(exist_ok=True)
    jobs = min(jobs, len(todo)) or 1
    with _Owner(sweep_dir, slot_environments(jobs, _visible_gpus() if jobs > 1 else [])) as owner:
        while todo := _run_points(sweep, owner, todo, result, log):
            log(f"  {len(todo)} point(s) held by another live process: {', '.join(p.name for p in todo)}; waiting")
            while todo and all(is_locked(sweep_dir / p.name) for p in todo) and not owner.signals:
                time.sleep(WAIT_POLL_S)
            if owner.signals:
                result.interrupted += [p.name for p in todo]
                break
            result.skipped += [p.name for p in todo if is_complete(sweep_dir / p.name)]
            todo = [p for p in todo if not is_complete(sweep_dir / p.name)]
    result.seconds = time.time() - started
    return result


def _selected(points: list[Point], point_index: int | None) -> list[Point]:
    if point_index is None:
        return points
    if isinstance(point_index, bool) or not 0 <= int(point_index) < len(points):
        raise ValueError(f"--point {point_index!r} is out of range: the sweep has points 0 to {len(points) - 1}")
    return [points[int(point_index)]]


def _refuse_stale(sweep_dir: Path, points: list[Point], statuses: dict) -> None:
    stale = [p for p in points if statuses[p.name] == "stale"]
    if stale:
        details = "; ".join(
            f"{p.name} ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in _changed(sweep_dir / p.name, p).items())})"
            for p in stale[:5]
        )
        raise ValueError(
            f"{len(stale)} finished point(s) in {sweep_dir} were run with other parameters: {details}. "
            f"Use another --out or --name, or delete those folders to rerun them."
        )


def run_or_read(
    sweep_file: str | os.PathLike,
    runs_dir: str | os.PathLike = "runs",
    results_dir: str | os.PathLike | None = "results",
    run: bool = True,
    jobs: int = 1,
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The sweep folder to report on: run the sweep (``run=True``), or read finished results.

    With ``run=False`` the sweep is read from ``runs_dir/<name>`` (a sweep run here before) or
    ``results_dir/<name>`` (committed results), the first where every point is complete and was
    run with the sweep file's parameters; otherwise it is run into ``runs_dir`` after all
    (resuming what exists). Reading does not need the notebook to be runnable.
    """
    sweep = load_sweep(sweep_file, overrides, check_notebook=run)  # reading needs no runnable notebook
    if not run:
        expanded = sweep.expand()
        for folder in [Path(runs_dir)] + ([Path(results_dir)] if results_dir else []):
            candidate = folder / sweep.name
            if candidate.is_dir() and all(point_status(candidate / p.name, p) == "done" for p in expanded):
                log(
                    f"reading {sweep.name} from {candidate}: {len(expanded)} point{'s' * (len(expanded) != 1)}, "
                    f"all complete "
                    f"({_provenance(candidate)})"
                )
                return candidate
        log(f"{sweep.name}: no finished results to read; running it")
        sweep = load_sweep(sweep_file, overrides)  # now with the notebook's parameter names checked
    result = run_sweep(sweep, runs_dir, jobs=jobs, log=log)
    log(result.summary())
    if not result.ok:
        raise RuntimeError(result.summary())
    return result.sweep_dir


def _provenance(folder: Path) -> str:
    readme = folder / "COMMAND.txt"
    if readme.exists():
        return "made by: " + readme.read_text().strip().splitlines()[0]
    return "run here"
