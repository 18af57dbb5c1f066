"""ccloss.analysis and ccloss.plots against independent references (loops, hand counts)."""

import json
import math
import os
import stat

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from ccloss import analysis, plots
from ccloss.cc_loss import cc_statistics, pairwise_distances
from ccloss.config import TrainConfig
from ccloss.measures import pair_geometry
from ccloss.metrics import dataset_intra_inter


def _data(n=40, c=6, k=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    x = rng.normal(size=(n, c)) + labels[:, None] * 0.5
    return x, labels


def _loop_class_distance(x, labels, k):
    out = np.full((k, k), np.nan)
    for a in range(k):
        for b in range(k):
            values = [
                np.sum((x[i] - x[j]) ** 2)
                for i in range(len(x))
                for j in range(len(x))
                if labels[i] == a and labels[j] == b and i != j
            ]
            if values:
                out[a, b] = np.mean(values)
    return out


# ---------------------------------------------------------------------------------------------
# class-level matrices
# ---------------------------------------------------------------------------------------------


def test_class_distance_matrix_matches_loop():
    x, labels = _data()
    labels[0] = 4  # a class with a single sample: its diagonal entry is undefined
    k = 6  # class 5 is absent
    got = analysis.class_distance_matrix(x, labels, num_classes=k)
    want = _loop_class_distance(x, labels, k)
    assert got.shape == (k, k)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-9, atol=1e-9)
    assert np.isnan(got[4, 4]) and np.isnan(got[5]).all()


def test_class_distance_diagonal_weighted_is_d_intra():
    x, labels = _data(n=50, k=5, seed=3)
    m = analysis.class_distance_matrix(x, labels)
    counts = np.bincount(labels)
    pairs = counts * (counts - 1)
    d_intra = np.nansum(np.diag(m) * pairs) / pairs.sum()
    ref = dataset_intra_inter(torch.as_tensor(x), torch.as_tensor(labels))
    assert d_intra == pytest.approx(ref["d_intra"], rel=1e-9)


def test_class_channel_matrix_matches_loop():
    x, labels = _data(n=30, c=5, k=3)
    got = analysis.class_channel_matrix(x, labels, num_classes=4)
    for cls in range(3):
        np.testing.assert_allclose(got[cls], x[labels == cls].mean(axis=0))
    assert np.isnan(got[3]).all()


def test_channel_order_is_a_permutation_grouped_by_class():
    m = np.array([[0.9, 0.1, 0.5, 0.2], [0.1, 0.9, 0.5, 0.8]])
    order = analysis.channel_order(m)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert order[0] == 0  # the channel class 0 uses most comes first
    assert set(order[-2:].tolist()) == {1, 3}  # class 1's channels last


def test_class_sorted_is_stable():
    x = np.arange(6.0)[:, None]
    xs, ys, order = analysis.class_sorted(x, [2, 0, 2, 1, 0, 1])
    assert order.tolist() == [1, 4, 3, 5, 0, 2]
    assert ys.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(xs[:, 0], order)


def test_stratified_subset():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    idx = analysis.stratified_subset(labels, 50, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5, 10, 15, 20]
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx.tolist())) == len(idx)
    assert np.array_equal(idx, analysis.stratified_subset(labels, 50, seed=0))
    assert not np.array_equal(idx, analysis.stratified_subset(labels, 50, seed=1))
    assert np.array_equal(analysis.stratified_subset(labels, 500), np.arange(100))


# ---------------------------------------------------------------------------------------------
# t-SNE, silhouette, scores
# ---------------------------------------------------------------------------------------------


def test_tsne_embed_shape_and_seed():
    x, labels = _data(n=60, c=80)
    a = analysis.tsne_embed(x, seed=0, max_iter=250, pca_dims=10)
    b = analysis.tsne_embed(x, seed=0, max_iter=250, pca_dims=10)
    assert a.shape == (60, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b)


def test_silhouette_separated_and_mixed():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    separated = rng.normal(size=(40, 3)) * 0.01 + labels[:, None] * 10
    assert analysis.silhouette(separated, labels) > 0.99
    mixed = rng.normal(size=(40, 3))
    assert abs(analysis.silhouette(mixed, labels)) < 0.2


# ---------------------------------------------------------------------------------------------
# toy descent, variants, cost
# ---------------------------------------------------------------------------------------------


def test_toy_attention_is_seeded():
    z, labels = analysis.toy_attention(n_per_class=5, num_classes=3, dim=2, seed=4)
    z2, _ = analysis.toy_attention(n_per_class=5, num_classes=3, dim=2, seed=4)
    assert z.shape == (15, 2) and z.dtype == torch.float64 and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert torch.equal(z, z2)


def test_descend_cc_pulls_classes_together_and_apart():
    z, labels = analysis.toy_attention(seed=1)
    result = analysis.descend_cc(z, labels, steps=50, lr=2.0)
    assert result["trajectory"].shape == (51, 24, 2)
    assert ((result["trajectory"] > 0) & (result["trajectory"] < 1)).all()
    assert result["loss"][-1] < 0.2 * result["loss"][0]
    assert result["d_intra"][-1] < result["d_intra"][0] and result["d_inter"][-1] > result["d_inter"][0]
    # step 0 is the loss of the starting vectors
    assert result["loss"][0] == pytest.approx(float(cc_statistics(torch.sigmoid(z), labels).loss))
    assert torch.equal(z, analysis.toy_attention(seed=1)[0])  # the input is not modified


def test_descend_cc_one_step_is_gradient_step():
    z, labels = analysis.toy_attention(n_per_class=3, seed=0)
    result = analysis.descend_cc(z, labels, steps=1, lr=0.1, sigmoid=False, form="difference")
    leaf = z.clone().requires_grad_(True)
    cc_statistics(leaf, labels, form="difference").loss.backward()
    np.testing.assert_allclose(result["trajectory"][1], (z - 0.1 * leaf.grad).numpy())


def test_variant_table_properties():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(32) % 8
    a = torch.rand(32, 16, generator=g) * 0.1 + torch.nn.functional.one_hot(labels, 16)[:, :16].float() * 0.5
    table = analysis.variant_table(a, labels).set_index(["form", "squared", "group_size"])
    ratio = table.loc[("ratio", True, "None")]
    assert ratio["batch"] < 0.2 and abs(ratio["random"] - 1) < 0.15 and abs(ratio["random, imbalanced"] - 1) < 0.15
    sums = table.loc[("sums", True, "None")]
    assert sums["random, imbalanced"] > 2 * sums["random"]
    diff = table.loc[("difference", True, "None")]
    assert diff["batch x10"] == pytest.approx(100 * diff["batch"], rel=1e-9)
    assert len(table) == 6


def test_variant_table_rows_are_the_loss_on_each_set():
    """One row by hand: a user's variant without a form is the paper's ratio, labelled so; the
    imbalanced control puts class 0 on every even position and the other classes in turn."""
    g = torch.Generator().manual_seed(1)
    a, labels = torch.rand(10, 3, generator=g, dtype=torch.float64), torch.arange(10) % 4
    row = analysis.variant_table(a, labels, [{"eps": 0.0}], seed=5).iloc[0]
    random = torch.rand(a.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    skewed = torch.tensor([0, 1, 0, 2, 0, 3, 0, 1, 0, 2])
    assert (row["form"], row["squared"], row["group_size"]) == ("ratio", True, "None")
    for column, (x, y) in {"batch": (a, labels), "batch x10": (10 * a, labels), "random": (random, labels)}.items():
        assert row[column] == pytest.approx(float(cc_statistics(x, y, form="ratio", eps=0.0).loss)), column
    assert row["random, imbalanced"] == pytest.approx(float(cc_statistics(random, skewed, form="ratio", eps=0).loss))


def test_broadcast_distances_match_gram():
    a = torch.rand(9, 5, dtype=torch.float64)
    loop = torch.tensor([[float(((a[i] - a[j]) ** 2).sum()) for j in range(9)] for i in range(9)], dtype=torch.float64)
    torch.testing.assert_close(analysis._broadcast_distances(a), loop)
    torch.testing.assert_close(pairwise_distances(a), loop)


def test_time_distances_table():
    timings = analysis.time_distances((8, 16), channels=4, repeats=1)
    assert timings["B"].tolist() == [8, 16]
    assert (timings["max |diff|"] < 1e-5).all() and (timings["gram (ms)"] > 0).all()


# ---------------------------------------------------------------------------------------------
# run directories
# ---------------------------------------------------------------------------------------------


def _fake_run(root, loss, seed, values):
    run = root / f"{loss}_seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"loss": loss, "seed": seed, "cam": True}))
    history = [
        {"epoch": e + 1, "loss": v, "test_acc": 10.0 * (e + 1), "test_merged_pairs": 2} for e, v in enumerate(values)
    ]
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "history": history, "final": {}}))
    return run


def test_load_histories_and_summary(tmp_path):
    runs = [
        _fake_run(tmp_path, "ce", 0, [3.0, 2.0]),
        _fake_run(tmp_path, "ce", 1, [5.0, 4.0]),
        _fake_run(tmp_path, "cc", 0, [1.0, 0.5]),
    ]
    frame = analysis.load_histories([*runs, tmp_path / "missing"])
    assert list(frame.columns) == ["run_dir", "loss", "seed", "cam", "epoch", "metric", "value"]
    assert len(frame) == 3 * 2 * 3  # runs x epochs x metrics (loss, test_acc, the renamed geometry count)
    assert set(frame["metric"]) == {"loss", "test_acc", "test_pair_geometry_below_2"}  # ccloss 0.4's key upgraded
    summary = analysis.history_summary(frame).set_index(["loss", "metric", "epoch"])
    row = summary.loc[("ce", "loss", 1)]
    assert row["mean"] == 4.0 and row["std"] == pytest.approx(math.sqrt(2)) and row["n"] == 2
    assert summary.loc[("cc", "loss", 2), "std"] == 0.0
    fig = plots.plot_training_curves(frame)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2  # only test_acc is a known panel here
    assert_readable(fig, "training curves")
    matplotlib.pyplot.close(fig)


# ---------------------------------------------------------------------------------------------
# embeddings of a model
# ---------------------------------------------------------------------------------------------


def test_collect_embeddings_from_images_and_loader():
    from ccloss import build_model
    from ccloss.data import dataset_info
    from ccloss.loader import TensorLoader

    info = dataset_info("digits")
    torch.manual_seed(0)
    model = build_model("resnet18", 10, in_channels=1, width_mult=0.0625)
    images = torch.randint(0, 255, (13, 1, 32, 32), dtype=torch.uint8)
    labels = torch.arange(13) % 10
    out = analysis.collect_embeddings(model, images, labels, info=info, batch_size=5)
    assert out["features"].shape == (13, 32) and out["attention"].shape == (13, 32)
    assert out["labels"].tolist() == labels.tolist() and out["predictions"].shape == (13,)
    loader = TensorLoader(images, labels, 4, train=False, info=info)
    again = analysis.collect_embeddings(model, loader)
    np.testing.assert_allclose(again["attention"], out["attention"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="labels= and info="):
        analysis.collect_embeddings(model, images)


@pytest.mark.slow
def test_test_embeddings_of_a_run(tmp_path):
    from ccloss.train import fit

    config = TrainConfig(
        dataset="digits", width_mult=0.0625, epochs=1, loss="cc", out=str(tmp_path / "run"), quiet=True, device="cpu"
    )
    fit(config)
    emb = analysis.test_embeddings(tmp_path / "run", device="cpu")
    assert emb["attention"].shape == (450, 32) and emb["labels"].shape == (450,)
    assert emb["test_acc"] == pytest.approx(emb["metrics"]["final"]["test_acc"], abs=1e-4)
    ratio = dataset_intra_inter(torch.as_tensor(emb["attention"]), torch.as_tensor(emb["labels"]))["ratio"]
    assert ratio == pytest.approx(emb["metrics"]["final"]["test_intra_inter"], rel=1e-4, nan_ok=True)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def assert_readable(fig, name):
    """Issue 25 item 6: every panel has a title and labelled axes, every colour bar a label."""
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            assert ax.get_ylabel() or ax.get_xlabel(), f"{name}: a colour bar without a label"
        elif ax.axison:
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), f"{name}: {ax.get_title()!r} unlabelled"


def test_plot_functions_return_figures_with_expected_axes(tmp_path):
    x, labels = _data(n=20, c=6, k=3)
    a = 1 / (1 + np.exp(-x))
    d = pairwise_distances(torch.as_tensor(a)).numpy()
    m = analysis.class_distance_matrix(a, labels)
    cm = analysis.class_channel_matrix(a, labels)
    z, toy_labels = analysis.toy_attention(n_per_class=3)
    descent = analysis.descend_cc(z, toy_labels, steps=4, lr=1.0)
    timings = pd.DataFrame({"B": [8, 16], "C": [4, 4], "gram (ms)": [1.0, 2.0], "naive (ms)": [2.0, 8.0]})
    figures = {
        "attention": (plots.plot_attention_batch(a, labels), 3),  # heatmap, its colourbar, histogram
        "matrix": (plots.plot_distance_matrix(d, labels), 2),
        "matrices": (plots.plot_distance_matrices({"A": (d, labels), "B": (d, labels)}), 3),
        "descent": (plots.plot_descent(descent, toy_labels.numpy(), steps=[0, 4]), 3),
        "timing": (plots.plot_timing(timings), 1),
        "grid": (plots.plot_embedding_grid({(m_, k): x[:, :2] for m_ in ("P", "Q") for k in ("u", "v")}, labels), 4),
        "comparison": (plots.plot_distance_comparison({"P": (d, labels), "Q": (d, labels)}, {"P": m, "Q": m}), 8),
        "shared": (plots.plot_distance_comparison({"P": (d, labels)}, {"P": m}, shared=True), 4),
        "separation": (
            plots.plot_pair_separation({"P": pair_geometry(a, labels), "Q": pair_geometry(a, labels)}),
            3,
        ),
        "heatmap": (plots.plot_class_channel_heatmaps({"P": cm, "Q": cm}, {"P": analysis.channel_order(cm)}), 4),
    }
    for name, (fig, n_axes) in figures.items():
        assert isinstance(fig, matplotlib.figure.Figure), name
        assert len(fig.axes) == n_axes, (name, len(fig.axes))
        assert_readable(fig, name)
        matplotlib.pyplot.close(fig)
    gif = plots.animate_descent(descent, toy_labels.numpy(), tmp_path / "d.gif", frames=3)
    assert gif.read_bytes()[:6] == b"GIF89a"


def test_each_distance_panel_has_its_own_scale():
    """CE+CAM's class x class panel was black next to CC-Loss's on a shared scale (issue 19)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    small, big = rng.random((12, 5)) * 0.01, rng.random((12, 5)) * 10
    d = {name: pairwise_distances(torch.as_tensor(x)).numpy() for name, x in {"small": small, "big": big}.items()}
    m = {name: analysis.class_distance_matrix(x, labels) for name, x in {"small": small, "big": big}.items()}
    fig = plots.plot_distance_comparison({k: (v, labels) for k, v in d.items()}, m)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert [image.get_clim()[1] for image in images] == pytest.approx(
        [d["small"].max(), d["big"].max(), m["small"].max(), m["big"].max()]  # the rows of panels, in turn
    )
    matplotlib.pyplot.close(fig)


def test_save_figure_writes_stable_files(tmp_path):
    fig = plots.plot_distance_matrix(np.eye(4), np.array([0, 0, 1, 1]), title="t")
    paths = plots.save_figure(fig, "example", tmp_path / "figs", formats=("png", "svg"))
    assert [p.name for p in paths] == ["example.png", "example.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = [p.read_bytes() for p in paths]
    plots.save_figure(fig, "example", tmp_path / "figs", formats=("png", "svg"))
    assert [p.read_bytes() for p in paths] == first  # a rerun writes the same bytes
    assert b"<dc:date>" not in first[1]
    assert sorted(os.listdir(tmp_path / "figs")) == ["example.png", "example.svg"]  # no temporary left
    mode = stat.S_IMODE(paths[0].stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH  # not mkstemp's 0600
    matplotlib.pyplot.close(fig)


def test_tsne_of_identical_rows_is_a_clear_error_not_a_crash():
    from ccloss.analysis import tsne_embed

    with pytest.raises(ValueError, match="identical rows"):
        tsne_embed(np.full((40, 8), 0.5), max_iter=250)
