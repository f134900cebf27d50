"""``aimfair-bench custom``: a benchmark task from a metadata CSV and a folder of synthetic images."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import aimfair_bench.runner
from aimfair_bench.cli import main
from aimfair_bench.custom import TaskDataError, assign_splits, load_metadata_task, metadata_task, read_metadata

PER_CELL = 20  # real images per (y, s) cell
SYNTHETIC_PER_CELL = 24
FAST = ["--seeds", "0", "--image-size", "16", "--width", "4", "--epochs", "1", "--finetune-epochs", "1",
        "--no-progress", "--n-jobs", "1", "--val-share", "0.2", "--test-share", "0.2"]


def square(y, s, shade):
    """A 16 px image: the background channel says s, a square (y = 1) or a bar (y = 0) says y."""
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 2 * s] = shade
    if y:
        image[4:12, 4:12] = 255
    else:
        image[6:10, :] = 255
    return Image.fromarray(image)


@pytest.fixture
def own_data(tmp_path):
    """``meta.csv`` (paths relative to it, y as "no"/"yes", s as 0/1), the PNGs, and a synthetic folder."""
    root = tmp_path / "data"
    rng = np.random.RandomState(0)
    rows = []
    for y in (0, 1):
        for s in (0, 1):
            (root / "images").mkdir(parents=True, exist_ok=True)
            for i in range(PER_CELL):
                name = f"images/{y}{s}_{i:02d}.png"
                square(y, s, 120 + rng.randint(60)).save(root / name)
                rows.append({"path": name, "y": ["no", "yes"][y], "s": s})
            folder = root / "synthetic" / f"{y}_{s}"
            folder.mkdir(parents=True)
            for i in range(SYNTHETIC_PER_CELL):
                square(y, s, 200).save(folder / f"{i:05d}.png")
    pd.DataFrame(rows).to_csv(root / "meta.csv", index=False)
    return root


def command(root, out, *extra, rates=("--erm-lrs", "0.05", "--finetune-lrs", "0.05")):
    """The command line; ``rates`` fix both learning rates (one value each: nothing searched) unless given."""
    return ["custom", "--metadata", str(root / "meta.csv"), "--synthetic-dir", str(root / "synthetic"),
            "--out", str(out), "--y-values", "no,yes", *FAST, *rates, *extra]


# -- end to end ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_custom_suite_runs_end_to_end_hides_group_labels_and_resumes(own_data, tmp_path, monkeypatch, capsys):
    seen = {}
    fit = aimfair_bench.runner.fit_method

    def spy(job, data, cache_dir):
        seen[job.method] = set(data)
        return fit(job, data, cache_dir)

    monkeypatch.setattr(aimfair_bench.runner, "fit_method", spy)
    out = tmp_path / "results"
    methods = ["erm", "jtt", "fairif", "group_dro", "full", "aimfair"]
    assert main(command(own_data, out, "--methods", *methods)) == 0
    frame = pd.read_csv(out / "records.csv")
    assert sorted(frame["method"]) == sorted(methods) and frame["ACC"].between(0, 100).all()
    # the split: 20 per cell -> 4 val, 4 test, 12 train each, recorded row by row
    split = pd.read_csv(out / "split.csv")
    assert split.groupby("split").size().to_dict() == {"test": 16, "train": 48, "val": 16}
    assert (split.groupby(["split", "y", "s"]).size().unstack(["y", "s"]).nunique(axis=1) == 1).all()
    assert split["path"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()
    assert (frame["n_train"] == 48).all() and (frame["n_test"] == 16).all()
    # which group labels each method was handed, and the records say so
    assert "s_train" in seen["group_dro"] and "s_val" in seen["group_dro"]
    assert "s_val" in seen["fairif"] and "s_train" not in seen["fairif"]
    for method in ("erm", "jtt", "full", "aimfair"):
        assert not any(key.startswith("s_") for key in seen[method]), method
    assert all(not key.endswith("_test") for keys in seen.values() for key in keys)
    labels = frame.set_index("method")["group_labels"]
    assert labels["group_dro"] == "training" and labels["fairif"] == "validation" and labels["aimfair"] == "none"
    record = json.loads(next((out / "records").rglob("aimfair/seed0.json")).read_text())
    assert record["settings"]["task"]["split"] == {"val_share": 0.2, "test_share": 0.2}
    assert record["settings"]["task"]["provider"] == {"kind": "folder", "root": str(own_data / "synthetic")}
    for name in ("selected.csv", "paired.csv", "report.md", "tradeoff.png"):
        assert (out / name).is_file()
    printed = capsys.readouterr().out
    assert "train        12        12        12        12" in printed
    assert "read by fairif (validation split), group_dro (training split)" in printed
    # resume: nothing runs again, records untouched
    stamps = {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}
    seen.clear()
    assert main(command(own_data, out, "--methods", *methods)) == 0
    assert not seen and "6 of 6 runs already have records" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}


@pytest.mark.slow
def test_custom_suite_searches_both_learning_rates_on_validation_data(own_data, tmp_path, capsys):
    out = tmp_path / "results"
    rates = ("--erm-lrs", "0.001", "0.1", "--finetune-lrs", "0.001", "0.1")
    assert main(command(own_data, out, "--methods", "erm", "full", rates=rates)) == 0
    stage_one = [json.loads(p.read_text()) for p in (out / "records").rglob("erm__lr=*/seed0.json")]
    assert sorted(r["variant_params"]["lr"] for r in stage_one) == [0.001, 0.1]
    best = max(stage_one, key=lambda r: (r["validation"]["group"]["WST"], r["validation"]["group"]["ACC"],
                                          -r["variant_params"]["lr"]))  # the group_val rule, ties: the first
    erm = json.loads(next((out / "records").rglob("erm/seed0.json")).read_text())
    assert erm["settings"]["recipe"]["lr"] == best["variant_params"]["lr"]  # the model fine-tuning starts from
    full = [json.loads(p.read_text()) for p in (out / "records").rglob("full__*/seed0.json")]
    assert sorted(r["settings"]["finetune"]["finetune_lr"] for r in full) == [0.001, 0.1]
    assert all(r["settings"]["recipe"]["lr"] == best["variant_params"]["lr"] for r in full)
    report = (out / "report.md").read_text()
    assert "## Learning rates searched on validation data" in report and "not assumed to carry over" in report
    assert f"**{best['variant_params']['lr']}**" in report
    frame = pd.read_csv(out / "records.csv")
    assert sorted(frame["method"]) == ["erm", "full", "full"]  # the tables: ERM at the chosen rate, full at both


@pytest.mark.slow
def test_custom_suite_generates_synthetic_images_with_a_diffusers_pipeline(own_data, tmp_path, tiny_pipeline_path,
                                                                           capsys):
    out = tmp_path / "results"

    def args(out, n_per_cell):
        return ["custom", "--metadata", str(own_data / "meta.csv"), "--pipeline", str(tiny_pipeline_path),
                "--y-values", "no,yes", "--target-words", "unsmiling,smiling", "--protected-words", "female,male",
                "--n-per-cell", str(n_per_cell), "--inference-steps", "2", "--out", str(out),
                "--methods", "erm", "aimfair", *FAST, "--erm-lrs", "0.05", "--finetune-lrs", "0.05"]

    assert main(args(out, 30)) == 0
    cache = next((out / "synthetic").iterdir())
    assert cache.name == "custom_unsmiling_smiling_female_male"
    assert all(len(list((cache / f"{y}_{s}").glob("*.png"))) == 30 for y in (0, 1) for s in (0, 1))
    assert "y=1, s=0: Portrait face photo of a smiling female person" in capsys.readouterr().out
    assert len(pd.read_csv(out / "records.csv")) == 2
    # too few images per cell for what a run requests: refused before anything is generated or trained
    with pytest.raises(SystemExit, match=r"--n-per-cell 5 is fewer than a run requests"):
        main(args(tmp_path / "other", 5))
    assert not (tmp_path / "other").exists()


# -- errors before any training ----------------------------------------------------------------------------


def rewrite(root, change):
    """Replace the metadata file by ``change(frame)``."""
    change(pd.read_csv(root / "meta.csv", dtype=str, keep_default_na=False)).to_csv(root / "meta.csv", index=False)


def with_values(column, rows, value):
    def change(meta):
        meta.loc[rows, column] = value
        return meta
    return change


def refused(root, out, *extra, args=None):
    with pytest.raises(SystemExit) as caught:
        main(args or command(root, out, "--methods", "erm", "aimfair", *extra))
    assert not out.exists(), "nothing is written when the checks fail"
    return str(caught.value)


def test_missing_columns_and_labels_are_named(own_data, tmp_path):
    out = tmp_path / "out"
    original = pd.read_csv(own_data / "meta.csv", dtype=str)
    rewrite(own_data, lambda m: m.drop(columns="s"))
    assert "has no column 's'" in refused(own_data, out)
    rewrite(own_data, lambda m: m.assign(s=original["s"]))
    rewrite(own_data, with_values("s", [3, 7], ""))
    assert "Column 's' of" in (msg := refused(own_data, out)) and "empty in 2 rows (CSV lines 5, 9)" in msg


def test_non_binary_and_unmapped_labels_are_refused(own_data, tmp_path):
    out = tmp_path / "out"
    msg = refused(own_data, out, args=[a for a in command(own_data, out, "--methods", "erm") if a != "no,yes"
                                       and a != "--y-values"])
    assert "Column 'y' holds ['no', 'yes'], not 0/1 or True/False" in msg and "--y-values no,yes" in msg
    assert "which the mapping ['no', 'maybe'] (0, 1) does not name" in refused(
        own_data, out, args=[*command(own_data, out, "--methods", "erm"), "--y-values", "no,maybe"])
    rewrite(own_data, with_values("y", [0, 1, 2], "maybe"))
    assert "Column 'y' holds 3 values (maybe, no, yes)" in refused(
        own_data, out, args=[a for a in command(own_data, out, "--methods", "erm") if a not in ("no,yes", "--y-values")])


def test_missing_and_unreadable_images_are_named(own_data, tmp_path):
    (own_data / "images" / "00_03.png").unlink()
    (own_data / "images" / "11_07.png").write_bytes((own_data / "images" / "11_07.png").read_bytes()[:60])
    msg = refused(own_data, tmp_path / "out")
    assert "2 of 80 images" in msg and "00_03.png" in msg and "11_07.png" in msg


def test_a_cell_without_images_in_a_split_is_refused(own_data, tmp_path):
    def explicit(meta):
        meta["split"] = np.where(np.arange(len(meta)) % 5 == 0, "val", np.where(np.arange(len(meta)) % 5 == 1,
                                                                                  "test", "train"))
        meta.loc[(meta["y"] == "yes") & (meta["s"] == "1") & (meta["split"] == "test"), "split"] = "train"
        return meta

    rewrite(own_data, explicit)
    args = [a for a in command(own_data, tmp_path / "out", "--methods", "erm") if a not in ("--val-share",
                                                                                          "--test-share", "0.2")]
    assert "none in: test y=1, s=1" in refused(own_data, tmp_path / "out", args=args)
    # shares next to a split column are refused too
    assert "has a split column" in refused(own_data, tmp_path / "out")
    rewrite(own_data, lambda m: m.assign(split=m["split"].replace("val", "validation")))
    assert "holds validation; expected train, val or test" in refused(own_data, tmp_path / "out", args=args)


def test_synthetic_folder_missing_a_cell_too_small_or_broken_is_refused(own_data, tmp_path):
    synthetic = own_data / "synthetic"
    for path in sorted((synthetic / "0_1").iterdir())[5:]:
        path.unlink()
    (synthetic / "1_0" / "00002.png").write_bytes(b"not a png")
    for path in (synthetic / "1_1").iterdir():
        path.unlink()
    (synthetic / "1_1").rmdir()
    msg = refused(own_data, tmp_path / "out")
    assert "0_1 holds 5 images; a run needs 22" in msg  # 90/10 bias of 48 images: 22 in a majority cell
    assert "1_0/00002.png" in msg and "No folder" in msg and "1_1" in msg


def test_options_that_do_not_fit_the_suite_are_refused(own_data, tmp_path):
    out = tmp_path / "out"
    assert "--n-test do not apply to your own data" in refused(own_data, out, "--n-test", "10")
    assert "belong to the custom suite" in refused(own_data, out, args=["quick", "--metadata", "x.csv", "--out",
                                                                        str(out)])
    assert "needs --metadata" in refused(own_data, out, args=["custom", "--out", str(out)])
    no_provider = [a for a in command(own_data, out, "--methods", "erm", "aimfair") if a not in (
        "--synthetic-dir", str(own_data / "synthetic"))]
    assert "has no synthetic-data provider" in refused(own_data, out, args=no_provider)
    assert "--pipeline needs --protected-words" in refused(
        own_data, out, args=[*no_provider, "--pipeline", "some/model"])


# -- the task itself ----------------------------------------------------------------------------------------


def test_split_is_stratified_seeded_and_edits_to_the_metadata_are_noticed(own_data):
    frame = read_metadata(own_data / "meta.csv", y_values=("no", "yes"))
    a = assign_splits(frame, val_share=0.1, test_share=0.25, seed=3)
    b = assign_splits(frame, val_share=0.1, test_share=0.25, seed=3)
    c = assign_splits(frame, val_share=0.1, test_share=0.25, seed=4)
    assert a["split"].tolist() == b["split"].tolist() != c["split"].tolist()
    per_cell = a.groupby(["y", "s", "split"]).size().unstack("split")
    assert (per_cell["val"] == 2).all() and (per_cell["test"] == 5).all() and (per_cell["train"] == 13).all()
    with pytest.raises(TaskDataError, match="must leave rows for training"):
        assign_splits(frame, val_share=0.5, test_share=0.5, seed=0)
    spec = metadata_task(own_data / "meta.csv", y_values=("no", "yes"), val_share=0.1, test_share=0.25,
                         split_seed=3, image_size=16, provider=None)
    data = load_metadata_task(spec, seed=0)
    assert len(data.y_train) == spec["n_train"] == 52 and data.X_val_train is data.X_val
    assert set(data.X_test) == set(a.loc[a["split"] == "test", "path"])
    rewrite(own_data, lambda m: m.drop(index=0))
    with pytest.raises(TaskDataError, match="changed after the task was built"):
        load_metadata_task(spec, seed=0)
    # n_train caps the training split, stratified
    capped = load_metadata_task(dict(spec, n_train=20, metadata_sha256=metadata_task(
        own_data / "meta.csv", y_values=("no", "yes"), val_share=0.1, test_share=0.25)["metadata_sha256"]), 0)
    assert len(capped.y_train) == 20 and len(set(zip(capped.y_train, capped.s_train))) == 4


# -- the user guide's examples (docs/user_guide/own_data.md), as written ----------------------------------------

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user_guide" / "own_data.md"


def readme_block(name):
    """The code block that follows ``<!-- readme-example: NAME -->`` in the user guide page."""
    after = GUIDE.read_text().split(f"<!-- readme-example: {name} -->", 1)[1]
    return re.search(r"```\w*\n(.*?)```", after, re.S).group(1)


@pytest.mark.slow
def test_readme_image_folder_example_and_command_work_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for y, y_name in enumerate(("not_smiling", "smiling")):
        for s, s_name in enumerate(("female", "male")):
            folder, synthetic = Path("data/images", y_name, s_name), Path("data/synthetic", f"{y}_{s}")
            folder.mkdir(parents=True)
            synthetic.mkdir(parents=True)
            for i in range(12):
                square(y, s, 100 + 10 * i).save(folder / f"{i:04d}.png")
            for i in range(20):
                square(y, s, 210).save(synthetic / f"{i:05d}.png")
    exec(readme_block("image-folder"), {})
    meta = pd.read_csv("data/meta.csv")
    assert len(meta) == 48 and meta["path"].iloc[0] == "images/not_smiling/female/0000.png"
    command = shlex.split(readme_block("image-folder-command").replace("\\\n", " "))
    assert command[0] == "aimfair-bench"
    toy = ["--seeds", "0", "--image-size", "16", "--width", "4", "--epochs", "1", "--finetune-epochs", "1",
           "--no-progress", "--n-jobs", "1"]
    assert main(command[1:] + toy) == 0
    frame = pd.read_csv("results/mine/records.csv")
    # as written, both learning rates are searched: ERM at the rate chosen first, each fine-tuning method at
    # every fine-tuning rate (CUSTOM_FINETUNE_LRS)
    from aimfair_bench.suites import CUSTOM_FINETUNE_LRS

    counts = frame["method"].value_counts().to_dict()
    assert counts == {"erm": 1, "jtt": 1, "full": len(CUSTOM_FINETUNE_LRS), "aimfair": len(CUSTOM_FINETUNE_LRS)}
    assert "## Learning rates searched on validation data" in Path("results/mine/report.md").read_text()
    split = pd.read_csv("results/mine/split.csv")  # default shares 0.1 / 0.2 of 12 per cell: 1 / 2 / 9
    assert split.groupby("split").size().to_dict() == {"test": 8, "train": 36, "val": 4}
    smiling = split["path"].str.contains("/smiling/")
    assert (split.loc[smiling, "y"] == 1).all() and (split.loc[~smiling, "y"] == 0).all()


def test_readme_celeba_example_works_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("celeba/img_align_celeba").mkdir(parents=True)
    names, rows, parts = ["5_o_Clock_Shadow", "Male", "Smiling", "Young"], [], []
    for i in range(48):
        name = f"{i + 1:06d}.jpg"
        Image.new("RGB", (18, 22), (40 * (i % 4), 90, 30)).save(Path("celeba/img_align_celeba") / name)
        values = [-1, 1 if i % 2 else -1, 1 if (i >> 1) % 2 else -1, 1]
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
        parts.append(f"{name} {0 if i < 32 else 1 if i < 40 else 2}")
    Path("celeba/list_attr_celeba.txt").write_text(f"48\n{' '.join(names)} \n" + "\n".join(rows) + "\n")
    Path("celeba/list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    exec(readme_block("celeba"), {})
    spec = metadata_task("celeba/meta.csv", image_size=16)
    assert spec["split"] is None and spec["n_train"] == 32
    data = load_metadata_task(spec, seed=0)
    assert len(data.y_val) == 8 and len(data.y_test) == 8
    first = Path(data.X_train[0])
    assert first.name == "000001.jpg" and first.is_file()
    index = np.array([int(Path(p).stem) - 1 for p in data.X_train])
    np.testing.assert_array_equal(data.y_train, (index >> 1) % 2)  # Smiling
    np.testing.assert_array_equal(data.s_train, index % 2)  # Male
