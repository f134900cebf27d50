"""The benchmark suite: jobs, resumable records, paper-layout tables, plots, parallel backends, the paper path."""

import functools
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aimfair_bench.cli import main
from aimfair_bench.report import cell_table, markdown_report, records_frame, summarise, table1
from aimfair_bench.runner import (
    cache_folder,
    collect_records,
    is_done,
    make_jobs,
    record_path,
    run_job,
    run_jobs,
    settings_hash,
)
from aimfair_bench.suites import build_suite

TOY = ["--seeds", "0", "--n-train", "200", "--n-test", "200", "--n-val-per-cell", "10", "--n-val-train", "40",
       "--image-size", "16", "--width", "4", "--epochs", "1", "--finetune-epochs", "1", "--no-progress", "--n-jobs", "1"]


@functools.lru_cache(maxsize=None)
def untuned_path():
    """Tuned settings that tune nothing: toy runs keep the recipe's settings and plain variant names."""
    path = Path(tempfile.mkdtemp(prefix="untuned-")) / "tuned.json"
    path.write_text(json.dumps({"source": "test: nothing tuned", "methods": {}}))
    return path


@pytest.fixture(scope="session")
def untuned():
    return untuned_path()


def toy_suite(methods=("erm", "aimfair"), tuned=None, **finetune):
    suite = build_suite("quick", tuned_path=tuned or untuned_path())
    suite.seeds, suite.methods = (0,), tuple(methods)
    suite.tasks[0].update(n_train=200, n_test=200, n_val_per_cell=10, n_val_train=40, image_size=16)
    suite.recipe.update(width=4, max_epochs=1)
    suite.finetune.update({"finetune_epochs": 1, **finetune})
    return suite


# -- jobs ------------------------------------------------------------------------------------------


def test_jobs_cover_tasks_seeds_methods_and_variants_with_erm_first():
    suite = build_suite("quick", tuned_path=untuned_path())
    suite.seeds = (0, 1)
    jobs = make_jobs(suite)
    per_seed = 5 + 2 + 5 + 2 + 4 + 4  # baselines, synthetic, lp/full/cosine/normalized/aimfair, random x2, blocks
    assert len(jobs) == 2 * per_seed
    assert [j.method for j in jobs if j.seed == 0][0] == "erm"
    labels = {j.variant for j in jobs if j.method == "update_block"}
    assert labels == {f"block=layer{i}" for i in range(1, 5)}
    assert len({j.settings_hash for j in jobs}) == len(jobs)
    assert all(j.finetune == {} for j in jobs if j.method in ("erm", "jtt"))


def test_learning_rate_search_makes_variants_and_every_setting_changes_the_hash():
    suite = toy_suite(methods=("erm", "full"))
    suite.finetune_lrs = (0.001, 0.01)
    jobs = make_jobs(suite)
    assert [j.variant for j in jobs[1:]] == ["ft_lr=0.001", "ft_lr=0.01"]
    assert [j.finetune.get("finetune_lr") for j in jobs[1:]] == [0.001, 0.01]
    base = make_jobs(toy_suite(methods=("aimfair",)))[0]
    for change in ({"finetune_epochs": 2}, {"bias_ratio": 0.9}):
        other = make_jobs(toy_suite(methods=("aimfair",), **change))[0]
        assert other.settings_hash != base.settings_hash
    assert settings_hash(base.to_settings()) == base.settings_hash


def test_unknown_method_and_bad_parallel_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Unknown methods"):
        make_jobs(toy_suite(methods=("erm", "dro")))
    with pytest.raises(ValueError, match="backend"):
        run_jobs([], tmp_path, backend="spark")
    with pytest.raises(ValueError, match="n_jobs"):
        run_jobs([], tmp_path, n_jobs=0)
    with pytest.raises(SystemExit, match="No task"):
        main(["paper", "--out", str(tmp_path)])


# -- tables ----------------------------------------------------------------------------------------


def fake_record(method, seed, acc, wst, variant="", task="t", val_acc=None, val_wst=None):
    """A record whose validation metrics default to its test metrics (tests of selection set them apart)."""
    cells = {f"cell_y{y}_s{s}": wst + 10 * (2 * y + s) for y in (0, 1) for s in (0, 1)}
    metrics = {"ACC": acc, "WST": wst, "EO": 100 - wst, "STD": 1.0, "AD": 0, "AOD": 0, "EOD": 0, **cells}
    val_acc, val_wst = acc if val_acc is None else val_acc, wst if val_wst is None else val_wst
    validation = {"train": {"ACC": val_acc, "WST": 0.0, "EO": 0.0},
                  "group": {"ACC": val_acc, "WST": val_wst, "EO": 100 - val_wst}}
    return {"suite": "s", "task": task, "method": method, "method_name": method, "variant": variant, "seed": seed,
            "n_train": 1, "n_test": 1, "wall_s": 1.0, "device": "cpu", "settings_hash": "h", "metrics": metrics,
            "validation": validation, "variant_params": {}}


def test_summary_means_stds_and_validation_columns():
    records = [fake_record("erm", 0, 80, 50, val_acc=70), fake_record("erm", 1, 90, 60, val_acc=72),
               fake_record("aimfair", 0, 88, 75)]
    summary = summarise(records_frame(records)).set_index(["method", "variant"])
    assert summary.loc[("erm", ""), "ACC_mean"] == 85
    assert math.isclose(summary.loc[("erm", ""), "ACC_std"], np.std([80, 90], ddof=1))
    assert summary.loc[("erm", ""), "val_train_ACC_mean"] == 71
    assert summary.loc[("erm", ""), "n_seeds"] == 2
    assert np.isnan(summary.loc[("aimfair", ""), "ACC_std"])


def test_paper_layouts_under_both_rules():
    records = [fake_record(m, seed, 80 + seed, 50 + seed, task=task)
               for task in ("A", "B") for m in ("erm", "jtt", "aimfair", "full") for seed in (0, 1)]
    summary = summarise(records_frame(records))
    t1 = table1(summary, "group_val")
    assert list(t1["Method"]) == ["ERM", "JTT", "AIM-Fair (Absolute Difference)"]
    assert list(t1.columns) == ["Method", "A: ACC", "A: WST", "A: EO", "B: ACC", "B: WST", "B: EO"]
    assert t1.loc[0, "A: ACC"] == "80.50 ± 0.71"
    t3 = cell_table(summary, ["erm", "full", "aimfair"], "label_free")["A"]
    assert list(t3["Target"]) == ["T=0", "T=1"] * 3
    assert list(t3["Method"]) == ["ERM", "", "Fully Fine-Tuning", "", "AIM-Fair (Absolute Difference)", ""]
    # cell (T=1, P=0) of fake_record is WST + 20
    assert t3.loc[1, "P=0"] == "70.50 ± 0.71" and t3.loc[1, "ACC"] == ""
    text = markdown_report(records_frame(records), "title")
    for rule in ("label_free", "group_val"):
        assert f"## Table 1 layout: comparison with other methods [rule: {rule}" in text
        assert f"## Table 3 layout: training strategies (A) [rule: {rule}]" in text
    assert "## All runs" in text and "| T=1" in text and "never on the test split" in text
    assert "AIM-Fair vs full fine-tuning, WST: +0.0" in text


# -- running, resuming, plots ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, untuned):
    out = tmp_path_factory.mktemp("bench")
    assert main(["quick", "--out", str(out), "--methods", "erm", "aimfair", "full", *TOY, "--tuned", str(untuned)]) == 0
    return out


@pytest.mark.slow
def test_run_writes_records_csv_tables_and_plots(toy_run):
    records = sorted(toy_run.glob("records/*/*/seed0.json"))
    assert [p.parent.name for p in records] == ["aimfair", "erm", "full"]
    record = json.loads(records[0].read_text())
    assert record["settings"]["finetune"]["finetune_epochs"] == 1 and record["device"] == "cpu"
    assert set(record["metrics"]) >= {"ACC", "WST", "EO", "STD", "cell_y0_s0", "cell_y1_s1"}
    assert record["mask"]["n_selected"] == sum(record["mask"]["selected_per_block"].values())
    assert sum(record["mask"]["tensors_per_block"].values()) == 62
    assert record["n_test"] == 200 - 40  # 10 per cell moved to the validation split
    cells = [record["metrics"][f"cell_y{y}_s{s}"] for y in (0, 1) for s in (0, 1)]
    assert math.isclose(record["metrics"]["WST"], min(cells), abs_tol=0.01)
    csv = pd.read_csv(toy_run / "records.csv")
    assert len(csv) == 3 and set(csv["method"]) == {"erm", "aimfair", "full"}
    report = (toy_run / "report.md").read_text()
    assert "AIM-Fair (Absolute Difference)" in report and "Fully Fine-Tuning" in report
    for name in ("tradeoff.png", "mask_blocks.png"):
        with Image.open(toy_run / name) as image:
            assert image.format == "PNG" and image.size[0] > 600


@pytest.mark.slow
def test_rerun_skips_existing_records_and_redoes_changed_or_broken_ones(toy_run, capsys, untuned):
    erm = toy_run / "records" / "coloured_MNIST" / "erm" / "seed0.json"
    before = {p: p.stat().st_mtime_ns for p in toy_run.glob("records/*/*/seed0.json")}
    main(["quick", "--out", str(toy_run), "--methods", "erm", "aimfair", "full", *TOY, "--no-plots", "--tuned", str(untuned)])
    assert "3 of 3 runs already have records" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # a torn record (interrupted write) and a changed fine-tuning setting: only those rerun
    full = toy_run / "records" / "coloured_MNIST" / "full" / "seed0.json"
    full.write_text('{"settings_hash": ')
    args = ["quick", "--out", str(toy_run), "--methods", "erm", "full", *TOY, "--tuned", str(untuned), "--no-plots"]
    main(args)
    assert "1 of 2 runs already have records" in capsys.readouterr().out
    assert erm.stat().st_mtime_ns == before[erm]
    assert json.loads(full.read_text())["method"] == "full"
    main(args[:-1] + ["--finetune-epochs", "2", "--no-plots"])
    out = capsys.readouterr().out
    assert "1 of 2 runs already have records" in out and "Wall time" in out
    assert json.loads(full.read_text())["settings"]["finetune"]["finetune_epochs"] == 2


@pytest.mark.slow
def test_report_only_writes_tables_from_existing_records_and_runs_nothing(toy_run, capsys, untuned):
    before = {p: p.stat().st_mtime_ns for p in toy_run.glob("records/*/*/seed0.json")}
    args = ["quick", "--out", str(toy_run), "--methods", "erm", "full", *TOY, "--tuned", str(untuned), "--no-plots"]
    main(args + ["--finetune-epochs", "7", "--report-only"])  # full at 7 epochs has no record: it is left out
    assert "runs already have records" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert set(pd.read_csv(toy_run / "records.csv")["method"]) == {"erm"}


@pytest.mark.slow
def test_fine_tuning_reuses_the_erm_model_of_its_seed(toy_run, monkeypatch, untuned):
    """A fine-tuning job after the ERM job trains nothing from scratch and reproduces its record exactly."""
    from aimfair_plugin.estimators import ImageClassifier

    job = make_jobs(toy_suite(methods=("aimfair",), tuned=untuned))[0]
    assert is_done(toy_run, job)  # the CLI flags and toy_suite() describe the same settings

    def no_training(*args, **kwargs):
        raise AssertionError("pre-training ran again")

    monkeypatch.setattr(ImageClassifier, "fit", no_training)
    record = run_job(job, str(cache_folder(toy_run)))
    stored = json.loads(record_path(toy_run, job).read_text())
    for part in ("metrics", "validation"):  # compared as JSON text: NaN (e.g. an undefined ratio) equals NaN
        assert json.dumps(record[part], sort_keys=True) == json.dumps(stored[part], sort_keys=True)
    for part in ("curve", "selected"):  # the checkpoints too (their scoring time aside)
        assert json.dumps(record["checkpoints"][part], sort_keys=True) == json.dumps(stored["checkpoints"][part],
                                                                                    sort_keys=True)


def test_topk_plot(tmp_path):
    suite = toy_suite(methods=("erm", "aimfair"))
    suite.variants = {"aimfair": [{"top_k": 50}, {"top_k": 58}]}
    jobs = make_jobs(suite)
    run_jobs(jobs, tmp_path, progress=False)
    records = collect_records(tmp_path, jobs)
    from aimfair_bench.plots import plot_topk

    summary = summarise(records_frame(records))
    assert plot_topk(summary, tmp_path / "topk.png") == tmp_path / "topk.png"
    sizes = {r["variant"]: r["mask"]["n_selected"] for r in records if r["method"] == "aimfair"}
    assert sizes["top_k=50"] <= sizes["top_k=58"]
    assert plot_topk(summary[summary["variant"] != "top_k=58"], tmp_path / "none.png") is None


def test_tradeoff_zoom_is_never_empty_when_the_lowest_eo_is_inaccurate():
    from aimfair_bench.plots import _zoom_limits

    # the lowest EO (5.0) belongs to a method 30 points below the best accuracy: the zoom keeps the accurate two
    rows = pd.DataFrame({"ACC_mean": [90.0, 88.0, 60.0], "ACC_std": [1.0, 2.0, 3.0], "EO_mean": [20.0, 25.0, 5.0],
                         "EO_std": [1.0, float("nan"), 1.0], "WST_mean": [70.0, 60.0, 40.0], "WST_std": [2.0] * 3})
    (x_lo, x_hi), (y_lo, y_hi) = _zoom_limits(rows, "EO", lower_is_better=True)
    assert x_lo < 19.0 and x_hi > 25.0 and y_lo < 86.0 and y_hi > 91.0
    assert all(math.isfinite(v) for v in (x_lo, x_hi, y_lo, y_hi))
    assert x_lo > 5.0 and y_lo > 60.0  # the inaccurate method is outside the zoom
    (x_lo, x_hi), _ = _zoom_limits(rows, "WST", lower_is_better=False)
    assert x_lo < 58.0 and x_hi > 72.0


def metrics_of(out, jobs):
    return {record_path(out, r).parent.name: r["metrics"] for r in collect_records(out, jobs)}


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_parallel_loky_and_dask_give_the_sequential_results(tmp_path, one_thread):
    """CPU training is deterministic for a fixed thread count, so the backend must not change any number.

    (Different thread counts change float sums in the last bits, which can flip near-tied tensor ranks.)
    """
    distributed = pytest.importorskip("distributed")
    jobs = make_jobs(toy_suite(methods=("erm", "linear_probe", "aimfair")))
    run_jobs(jobs, tmp_path / "seq", progress=False)
    run_jobs(jobs, tmp_path / "loky", n_jobs=2, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        run_jobs(jobs, tmp_path / "dask", n_jobs=2, backend="dask", scheduler=c.scheduler_address, progress=False)
    sequential = metrics_of(tmp_path / "seq", jobs)
    assert len(sequential) == 3
    assert metrics_of(tmp_path / "loky", jobs) == sequential
    assert metrics_of(tmp_path / "dask", jobs) == sequential


# -- the paper suite on fixture datasets and the tiny diffusion pipeline ----------------------------


@pytest.fixture
def celeba_root(tmp_path):
    """240 CelebA-layout images: train/valid/test = 160/40/40, every attribute pair balanced."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    names = ["5_o_Clock_Shadow", "Male", "Smiling", "Young"]
    rows, parts = [], []
    for i in range(240):
        name = f"{i + 1:06d}.jpg"
        colour = (40 * (i % 4), 30 * ((i >> 1) % 8), 90)
        Image.new("RGB", (18, 22), colour).save(root / "img_align_celeba" / name)
        values = [-1] + [1 if (i >> k) & 1 else -1 for k in range(3)]
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
        parts.append(f"{name} {0 if i < 160 else 1 if i < 200 else 2}")
    (root / "list_attr_celeba.txt").write_text(f"240\n{' '.join(names)}\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


@pytest.fixture
def utkface_root(tmp_path):
    root = tmp_path / "UTKFace"
    root.mkdir()
    for i in range(320):
        gender, race = i % 2, (i // 2) % 4
        Image.new("RGB", (20, 20), (50 * race, 100 * gender, 70)).save(
            root / f"{20 + i % 50}_{gender}_{race}_2017{i:010d}.jpg.chip.jpg")
    return root


@pytest.mark.slow
def test_paper_suite_runs_end_to_end_at_toy_scale(tmp_path, celeba_root, utkface_root, tiny_pipeline_path):
    out = tmp_path / "paper"
    args = ["paper", "--out", str(out), "--celeba-root", str(celeba_root), "--utkface-root", str(utkface_root),
            "--tasks", "T=Smiling P=Male", "UTKFace", "--pipeline", str(tiny_pipeline_path),
            "--inference-steps", "2", "--seeds", "0", "--n-train", "40", "--n-val-train", "8", "--n-test", "16",
            "--n-val-per-cell", "2",
            "--image-size", "16", "--width", "4", "--epochs", "1", "--finetune-epochs", "1",
            "--finetune-lrs", "0.01", "--methods", "erm", "fairif", "supplementation", "aimfair", "--no-progress"]
    assert main(args) == 0
    frame = pd.read_csv(out / "records.csv")
    assert sorted(set(frame["task"])) == ["CelebA T=Smiling P=Male", "UTKFace T=Female P=White"]
    assert len(frame) == 8 and frame["ACC"].between(0, 100).all()
    celeba = frame[frame["task"].str.startswith("CelebA")]
    assert (celeba["n_train"] == 40).all() and (celeba["n_test"] == 16).all()
    # the synthetic cache was generated once, up front, with the paper's folder layout and prompts
    cache = out / "synthetic" / "celeba_Smiling_Male"
    assert json.loads((cache / "settings.json").read_text())["num_inference_steps"] == 2
    assert len(list((cache / "1_0").glob("*.png"))) == 18  # 90/10 bias of 40 images: 18 in a majority cell
    # supplementation trained on real paths plus the cache's own files: nothing decoded, nothing copied
    assert not (out / "cache" / "supplementation").exists()
    assert len(frame[frame["method"] == "supplementation"]) == 2
    assert main(args) == 0  # resumes: nothing left to run


@pytest.mark.slow
def test_random_matched_has_the_size_of_the_mask_it_matches_and_the_evidence_table_pairs_them(tmp_path):
    from aimfair_bench.report import selection_evidence

    suite = toy_suite(methods=("erm", "cosine", "random_matched"))
    suite.variants = {"random_matched": [{"match": "cosine"}]}
    jobs = make_jobs(suite)
    run_jobs(jobs, tmp_path, progress=False)
    records = {r["method"]: r for r in collect_records(tmp_path, jobs)}
    assert records["random_matched"]["mask"]["n_selected"] == records["cosine"]["mask"]["n_selected"]
    assert records["random_matched"]["mask"]["selection"] == "random"
    table = selection_evidence(records_frame(list(records.values())))["coloured MNIST"]
    row = table[table["Method"].str.contains("Cosine")].iloc[0]
    expected = records["cosine"]["metrics"]["WST"] - records["random_matched"]["metrics"]["WST"]
    assert float(row["ΔWST vs random"]) == pytest.approx(expected, abs=0.01)
    assert float(row["Tensors"]) == records["cosine"]["mask"]["n_selected"]
    with pytest.raises(ValueError, match="random_matched can match"):
        bad = toy_suite(methods=("random_matched",))
        bad.variants = {"random_matched": [{"match": "jtt"}]}
        run_jobs(make_jobs(bad), tmp_path / "bad", progress=False)


# -- validation sets, tuning, plot styles ---------------------------------------------------------


def test_task_has_two_validation_sets_disjoint_from_train_and_test():
    from aimfair_bench.tasks import load_task

    spec = dict(toy_suite().tasks[0], n_train=400, n_val_train=100)
    data = load_task(spec, 0)
    assert (len(data.y_train), len(data.y_val_train), len(data.y_val)) == (400, 100, 40)
    sources = [data.source_index_train, data.source_index_val_train, data.source_index_test]
    assert len(np.unique(np.concatenate(sources))) == sum(map(len, sources))  # no image in two splits
    # the held-out set has the training distribution: the same (y, s) cell shares up to rounding
    share = lambda y, s: np.bincount(2 * y + s, minlength=4) / len(y)  # noqa: E731
    np.testing.assert_allclose(share(data.y_val_train, data.s_val_train), share(data.y_train, data.s_train), atol=0.01)
    np.testing.assert_array_equal(np.bincount(2 * data.y_val + data.s_val), [10] * 4)  # balanced, labelled
    with pytest.raises(ValueError, match="n_val_train"):
        load_task(dict(spec, n_val_train=0), 0)


def test_a_tasks_generated_splits_are_built_once_per_process_and_each_job_gets_its_own_copy(monkeypatch):
    from aimfair_bench import tasks

    spec = dict(toy_suite().tasks[0], n_train=400, n_val_train=100)
    monkeypatch.setattr(tasks, "_SPLITS", type(tasks._SPLITS)())
    built = []
    colored = tasks._colored
    monkeypatch.setattr(tasks, "_colored", lambda *args: built.append(args) or colored(*args))
    first = tasks.load_task(spec, 0)
    first.X_train[:] = 0  # a job that modifies its data does not change the next job's
    second = tasks.load_task(spec, 0)
    assert len(built) == 1
    fresh = colored(spec, 0)
    for key in ("X_train", "y_train", "s_train", "X_val_train", "X_val", "s_val", "X_test", "y_test"):
        np.testing.assert_array_equal(second[key], fresh[key])
    assert second.provider is not first.provider  # providers are made per job
    tasks.load_task(spec, 1)
    assert len(built) == 2


def test_tune_suite_searches_every_method_and_quick_runs_the_tuned_settings(tmp_path, untuned):
    from aimfair_bench.runner import pretraining_jobs
    from aimfair_bench.suites import FINETUNE_LRS, PAPER_METHODS, load_tuned

    tune = build_suite("tune")
    assert set(tune.variants) == set(PAPER_METHODS)
    assert all(len(grid) >= 2 for grid in tune.variants.values())
    jobs = make_jobs(tune)
    lrs = {j.finetune["finetune_lr"] for j in jobs if j.method == "aimfair"}
    assert lrs == set(FINETUNE_LRS)
    assert {j.params.get("lr") for j in jobs if j.method == "cvar_dro"} >= {0.01, 0.05}
    # the committed tuned settings cover every method of the quick suite and say where they came from
    tuned, source = load_tuned()
    assert set(tuned) == set(PAPER_METHODS) and source.startswith("aimfair-bench tune")
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps({"source": "test", "methods": {
        "erm": {"params": {"lr": 0.01}}, "random": {"params": {"top_k": 0.85, "finetune_lr": 0.003}}}}))
    quick = make_jobs(toy_suite(methods=("erm", "random", "full"), tuned=path))
    erm = next(j for j in quick if j.method == "erm")
    assert erm.params == {"lr": 0.01} and erm.to_settings()["tuned_from"] == "test"
    random = [j for j in quick if j.method == "random"]
    # the paper's ratios stay variants; only the tuned learning rate is carried over
    assert [j.params["top_k"] for j in random] == [0.55, 0.85]
    assert {j.finetune["finetune_lr"] for j in random} == {0.003}
    # ERM at a tuned lr does not train the recipe model fine-tuning starts from: one pre-training per seed does
    pretraining = pretraining_jobs(quick)
    assert len(pretraining) == 1 and pretraining[0].pretrain_only and pretraining[0].seed == 0
    assert pretraining_jobs(make_jobs(toy_suite(methods=("erm", "full"), tuned=untuned))) == []
    # a tuned lr equal to the recipe's is the recipe model: the ERM job trains it (and keeps its checkpoints)
    path.write_text(json.dumps({"source": "test", "methods": {"erm": {"params": {"lr": 0.05}}}}))
    same = make_jobs(toy_suite(methods=("erm", "full"), tuned=path))
    assert next(j for j in same if j.method == "erm").params == {"lr": 0.05} and pretraining_jobs(same) == []


def test_every_method_has_its_own_plot_style():
    from aimfair_bench.methods import METHODS
    from aimfair_bench.plots import method_style

    styles = [(method_style(m)["marker"], method_style(m)["color"]) for m in METHODS]
    assert len(set(styles)) == len(styles)


@pytest.mark.slow
def test_tune_cli_writes_the_group_val_choice_to_tuned_json(tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", "--out", str(out), "--methods", "erm", "cvar_dro", *TOY, "--no-plots"]) == 0
    tuned = json.loads((out / "tuned.json").read_text())
    assert tuned["rule"] == "group_val" and tuned["source"].startswith("aimfair-bench tune")
    selected = pd.read_csv(out / "selected.csv")
    for method in ("erm", "cvar_dro"):
        row = selected[(selected["method"] == method) & (selected["rule"] == "group_val")].iloc[0]
        entry = tuned["methods"][method]
        assert entry["variant"] == row["variant"] and entry["val_group_WST"] == pytest.approx(row["val_group_WST"], abs=0.01)
        assert entry["grid_size"] == (2 if method == "erm" else 9)
    assert set(tuned["methods"]["cvar_dro"]["params"]) == {"alpha", "lr"}
    # the written file drives a quick suite: its CVaR runs use the chosen parameters
    jobs = make_jobs(build_suite("quick", tuned_path=out / "tuned.json"))
    cvar = next(j for j in jobs if j.method == "cvar_dro")
    assert cvar.params == tuned["methods"]["cvar_dro"]["params"]


# -- the suites that replaced the stand-alone scripts ---------------------------------------------


@pytest.mark.slow
def test_group_dro_oracle_is_fit_with_the_training_group_labels(tmp_path, monkeypatch, untuned):
    from aimfair_plugin.estimators import GroupDROClassifier

    seen = {}
    fit = GroupDROClassifier.fit

    def spy(self, X, y, *, sensitive_features, **kwargs):
        seen["s"] = np.asarray(sensitive_features)
        return fit(self, X, y, sensitive_features=sensitive_features, **kwargs)

    monkeypatch.setattr(GroupDROClassifier, "fit", spy)
    out = tmp_path / "baselines"
    assert main(["baselines", "--out", str(out), "--methods", "erm", "group_dro", *TOY, "--tuned", str(untuned),
                 "--no-plots"]) == 0
    from aimfair_bench.tasks import load_task

    jobs = [j for j in make_jobs(build_suite("baselines", tuned_path=untuned)) if j.method == "group_dro"]
    assert {j.variant for j in jobs} == {"step_size=0.01", "step_size=0.1"}
    records = pd.read_csv(out / "records.csv")
    assert set(records["method"]) == {"erm", "group_dro"} and len(records) == 3
    task = json.loads(next((out / "records").glob("*/group_dro*/seed0.json")).read_text())["settings"]["task"]
    np.testing.assert_array_equal(seen["s"], load_task(task, 0).s_train)  # the oracle read the training groups
    assert "Group DRO (oracle: training group labels)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_adult_task_is_tabular_with_both_validation_sets_and_refuses_synthetic_methods(tmp_path):
    from aimfair_bench.tasks import load_task

    suite = build_suite("adult")
    spec = dict(suite.tasks[0], n_train=600, n_val_train=100, n_val_per_cell=20)
    data = load_task(spec, 0)
    assert data.provider is None and data.X_train.ndim == 2 and data.X_train.dtype == np.float32
    assert (len(data.y_train), len(data.y_val_train)) == (600, 100)
    np.testing.assert_array_equal(np.bincount(2 * data.y_val + data.s_val), [20] * 4)
    assert len(data.y_test) == len(load_task(spec, 1).y_test)  # the official test split minus the validation rows
    suite.tasks[0].update(n_train=600, n_val_train=100, n_val_per_cell=20)
    suite.seeds, suite.methods, suite.recipe["max_epochs"] = (0,), ("erm", "jtt"), 2
    jobs = make_jobs(suite)
    run_jobs(jobs, tmp_path, progress=False)
    records = collect_records(tmp_path, jobs)
    assert {r["method"] for r in records} == {"erm", "jtt"}
    erm = next(r for r in records if r["method"] == "erm")
    assert erm["metrics"]["ACC"] > 70 and erm["n_train"] == 600  # logistic regression learns (base rate ~75 %)
    suite.methods = ("erm", "aimfair")
    with pytest.raises(ValueError, match="no synthetic-data provider"):
        make_jobs(suite)


def test_prompt_suite_tasks_differ_only_in_their_provider_and_plain_prompts_render():
    from aimfair_bench.tasks import load_task

    suite = build_suite("prompts")
    assert suite.methods == ("synthetic_only",) and len(suite.tasks) == 4
    stripped = [{k: v for k, v in t.items() if k not in ("name", "provider")} for t in suite.tasks]
    assert all(s == stripped[0] for s in stripped)
    assert len({json.dumps(t["provider"], sort_keys=True) for t in suite.tasks}) == 4
    spec = dict(suite.tasks[0], n_train=40, n_val_train=8, n_test=40, n_val_per_cell=2, image_size=16,
                minority_share=0.25)
    assert spec["provider"] == {"kind": "rendered_digits", "prompts": "plain"}
    X, y, s = load_task(spec, 0).provider.sample({(0, 0): 2, (0, 1): 2, (1, 0): 2, (1, 1): 2},
                                                 image_shape=(3, 16, 16), random_state=0)
    assert X.shape == (8, 3, 16, 16) and np.bincount(2 * y + s).tolist() == [2] * 4


def test_mask_cost_measures_jaccard_against_the_full_pass(monkeypatch):
    from aimfair_bench import mask_cost
    from aimfair_bench.tasks import load_task

    monkeypatch.setitem(mask_cost.EMBEDDED_RECIPE, "width", 4)
    monkeypatch.setitem(mask_cost.EMBEDDED_RECIPE, "max_epochs", 1)
    spec = dict(toy_suite().tasks[0], n_train=128, n_val_train=32)
    rows = mask_cost.mask_stability(load_task(spec, 0), 0, caps=(1, 2), criteria=("abs_diff",))
    assert [r["max_batches"] for r in rows] == ["all", 1, 2]
    assert rows[0]["jaccard_vs_full"] == 1.0 and all(0 <= r["jaccard_vs_full"] <= 1 for r in rows)
    # 128 images in batches of 64: two batches are the whole pass
    assert rows[2]["jaccard_vs_full"] == 1.0


def test_png_writer_round_trips_through_the_one_decoder(tmp_path):
    from aimfair_plugin.datasets import read_images, write_images

    X = np.random.RandomState(0).rand(3, 3, 8, 8).astype(np.float32)
    paths = write_images(X, tmp_path, start=5)
    assert [Path(p).name for p in paths] == ["00005.png", "00006.png", "00007.png"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))  # written atomically, nothing left
    np.testing.assert_allclose(read_images(paths), X, atol=0.5 / 255 + 1e-6)  # 8-bit rounding only


@pytest.mark.slow
def test_domain_gap_suite_runs_writes_gap_measures_and_its_plot(tmp_path, untuned):
    out = tmp_path / "gap"
    args = ["domain-gap", "--out", str(out), "--tuned", str(untuned), *TOY, "--tasks", "shift 0.0", "shift 1.5",
            "--methods", "erm", "synthetic_only", "full", "aimfair", "random_matched", "auto_rgn", "--finetune-lrs", "0.01"]
    assert main(args) == 0
    frame = pd.read_csv(out / "records.csv")
    assert sorted(set(frame["task"])) == ["coloured MNIST, style shift 0.0", "coloured MNIST, style shift 1.5"]
    measures = pd.read_csv(out / "gap_measures.csv")
    assert list(measures["level"]) == [0.0, 1.5]
    # the stronger shift is farther from the real images in pixels
    assert measures["pixel_gap"].iloc[1] > measures["pixel_gap"].iloc[0]
    assert measures["synthetic_only_acc"].notna().all() and measures["erm_synthetic_acc"].between(0, 100).all()
    assert (out / "domain_gap.png").stat().st_size > 0
    versus = pd.read_csv(out / "gap_paired.csv")  # every method against full fine-tuning and Auto-RGN, per level
    assert {"Fully Fine-Tuning", "Auto-RGN (Surgical Fine-Tuning)"} <= set(versus["reference"])
    assert set(versus["task"]) == set(frame["task"])
    # ERM is shared by the two levels (same real data and seed): one model, the same test metrics
    erm = frame[frame["method"] == "erm"]
    assert erm["ACC"].nunique() == 1 and erm["WST"].nunique() == 1


def test_a_record_and_the_cell_table_show_every_class_and_group_cell():
    from aimfair_bench.runner import evaluate_predictions

    y = np.repeat(np.arange(3), 6)
    s = np.tile(np.arange(3), 6)
    record = evaluate_predictions("erm", y, np.where(s == 2, (y + 1) % 3, y), s)
    cells = {k: v for k, v in record.items() if k.startswith("cell_y")}
    assert len(cells) == 9 and cells["cell_y0_s2"] == 0.0 and cells["cell_y1_s1"] == 100.0
    frame = pd.DataFrame([{**record, "task": "t", "method": "erm", "variant": "", "seed": seed, "val_train_ACC": 90.0,
                           "val_group_WST": 50.0} for seed in (0, 1)])
    table = cell_table(summarise(frame), ["erm"], "label_free")["t"]
    assert list(table["Target"]) == ["T=0", "T=1", "T=2"] and {"P=0", "P=1", "P=2"} <= set(table.columns)
