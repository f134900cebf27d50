"""Your own images as a benchmark task: a metadata CSV and a folder (or a diffusers model) of synthetic images.

The metadata file has one row per image:

- ``path``: the image file, absolute or relative to the CSV's folder;
- ``y`` and ``s``: the binary target and protected attribute. 0/1 and True/False are read as they are; other
  values (strings such as "smiling", or CelebA's -1/1) need an explicit mapping, ``y_values=("not smiling",
  "smiling")``: the first value becomes 0, the second 1;
- ``split`` (optional): ``train``, ``val`` or ``test``. Without it, each (y, s) cell is split at random
  (``split_seed``) into the shares ``val_share`` and ``test_share``, the rest training; the shares and the
  seed are part of the task, so of every record, and ``split.csv`` in the output folder lists every row's split.

``s`` is read for evaluation, for the ``group_val`` selection rule and by the methods that declare that they
need it (see ``benchmarks.methods.Method.group_labels``); the runner hands the other methods data without it.
The validation split serves both selection rules: ``label_free`` reads its overall accuracy, ``group_val``
its worst-group accuracy. The split is fixed by ``split_seed``; the run seeds vary the training only, so every
seed is tested on the same images.

:func:`check_custom_task` finds every problem it can before any training (missing columns, unreadable files,
empty cells, non-binary labels, a synthetic folder missing a cell or too small) and raises one error naming it.
"""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch
from tqdm.auto import tqdm

from aimfair_plugin.datasets import CELLS, check_image_files
from aimfair_plugin.synth import ImageFolderProvider
from aimfair_plugin.utils import atomic_write

REQUIRED_COLUMNS = ("path", "y", "s")
SPLITS = ("train", "val", "test")
SHOWN = 5  # how many offending rows or files an error names


class TaskDataError(ValueError):
    """The user's data cannot make a benchmark task; the message says what is wrong and where."""


def file_digest(path):
    """SHA-256 of a file's bytes (a task records its metadata file's, so an edited file is noticed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shown(items):
    items = list(items)
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(map(str, items[:SHOWN])) + more


def _binary(column, name, values):
    """A label column as 0/1 ints: 0/1 or True/False as they are, anything else through ``values``."""
    text = column.astype(str).str.strip()
    if values is not None:
        values = [str(v).strip() for v in values]
        if len(values) != 2 or values[0] == values[1]:
            raise TaskDataError(f"The {name} mapping must name two different values (for 0, then 1), got {values}.")
        unknown = sorted(set(text) - set(values))
        if unknown:
            raise TaskDataError(f"Column {name!r} holds {_shown(unknown)}, which the mapping {values} (0, 1) does "
                                f"not name; labels must be binary.")
        return (text == values[1]).astype(int).to_numpy()
    lowered = text.str.lower()
    for zero, one in (("0", "1"), ("false", "true"), ("0.0", "1.0")):
        if set(lowered) <= {zero, one}:
            return (lowered == one).astype(int).to_numpy()
    found = sorted(set(text))
    if len(found) > 2:
        raise TaskDataError(f"Column {name!r} holds {len(found)} values ({_shown(found)}); labels must be binary.")
    raise TaskDataError(f"Column {name!r} holds {found}, not 0/1 or True/False: name the value for 0 and the value "
                        f"for 1 with --{name}-values (y_values / s_values), e.g. --{name}-values {','.join(found)}.")


def read_metadata(path, *, y_values=None, s_values=None):
    """The metadata CSV as a frame with ``path`` (absolute), ``y``, ``s`` (0/1 ints) and ``split`` if present.

    Raises :class:`TaskDataError` for a missing file or column, empty or duplicated paths, missing or
    non-binary labels and unknown split names.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"No metadata file at {path}.")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TaskDataError(f"Cannot read {path} as CSV: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame]
    if missing:
        raise TaskDataError(f"{path} has no column {' or '.join(map(repr, missing))}; it needs path, y and s (and "
                            f"optionally split). Its columns: {list(frame.columns)}.")
    if frame.empty:
        raise TaskDataError(f"{path} has no rows.")
    columns = [c for c in (*REQUIRED_COLUMNS, "split") if c in frame]
    for column in columns:
        blank = frame.index[frame[column].str.strip() == ""]
        if len(blank):
            raise TaskDataError(f"Column {column!r} of {path} is empty in {len(blank)} rows (CSV lines "
                                f"{_shown(blank + 2)}).")
    out = pd.DataFrame({"path": [str(p if p.is_absolute() else (path.parent / p).resolve())
                                 for p in map(Path, frame["path"].str.strip())]})
    duplicated = out["path"][out["path"].duplicated()].unique()
    if len(duplicated):
        raise TaskDataError(f"{len(duplicated)} image paths appear more than once in {path}: {_shown(duplicated)}.")
    out["y"] = _binary(frame["y"], "y", y_values)
    out["s"] = _binary(frame["s"], "s", s_values)
    if "split" in frame:
        split = frame["split"].str.strip().str.lower()
        unknown = sorted(set(split) - set(SPLITS))
        if unknown:
            raise TaskDataError(f"Column 'split' of {path} holds {_shown(unknown)}; expected train, val or test.")
        out["split"] = split.to_numpy()
    return out


def assign_splits(frame, *, val_share, test_share, seed):
    """A ``split`` column drawn per (y, s) cell: ``round(share * cell size)`` rows to val and to test, each
    at least one, the rest to train; the same ``seed`` gives the same split."""
    for name, share in (("val_share", val_share), ("test_share", test_share)):
        if not 0 < share < 1:
            raise TaskDataError(f"{name} must be in (0, 1), got {share!r}.")
    if val_share + test_share >= 1:
        raise TaskDataError(f"val_share + test_share must leave rows for training, got {val_share} + {test_share}.")
    rng = np.random.RandomState(seed)
    split = np.full(len(frame), "train", dtype=object)
    cells = frame["y"].to_numpy() * 2 + frame["s"].to_numpy()
    for cell in range(4):
        rows = rng.permutation(np.flatnonzero(cells == cell))
        n_val, n_test = (max(1, int(round(share * len(rows)))) for share in (val_share, test_share))
        if len(rows) < n_val + n_test + 1:
            y, s = divmod(cell, 2)
            raise TaskDataError(f"Cell (y={y}, s={s}) has {len(rows)} images; a split into train, val and test needs "
                                f"at least {n_val + n_test + 1} at these shares.")
        split[rows[:n_val]], split[rows[n_val:n_val + n_test]] = "val", "test"
    return frame.assign(split=split)


def cell_counts(frame):
    """Images per split (rows) and (y, s) cell (columns), zeros included."""
    counts = frame.groupby(["split", "y", "s"]).size()
    index = pd.MultiIndex.from_tuples([(split, y, s) for split in SPLITS for y, s in CELLS], names=counts.index.names)
    table = counts.reindex(index, fill_value=0).unstack(["y", "s"]).reindex(list(SPLITS))
    table.columns = [f"y={y}, s={s}" for y, s in table.columns]
    return table


def split_frame(spec):
    """The task's rows with their splits (and the ``n_train`` cap applied to training), as ``load_task`` uses."""
    frame = read_metadata(spec["metadata"], y_values=spec.get("y_values"), s_values=spec.get("s_values"))
    if spec.get("split") is not None:
        if "split" in frame:
            raise TaskDataError(f"{spec['metadata']} has a split column; it is used as is, so split shares cannot "
                                "be given too.")
        frame = assign_splits(frame, seed=spec.get("split_seed", 0), **spec["split"])
    elif "split" not in frame:
        raise TaskDataError(f"{spec['metadata']} has no split column: give split shares (--val-share, --test-share).")
    n_train = spec.get("n_train")
    train = np.flatnonzero(frame["split"].to_numpy() == "train")
    if n_train is not None and n_train < len(train):
        cells = (frame["y"] * 2 + frame["s"]).to_numpy()[train]
        _, dropped = train_test_split(train, train_size=n_train, stratify=cells, random_state=spec.get("split_seed", 0))
        frame = frame.drop(index=frame.index[dropped])
    elif n_train is not None and n_train > len(train):
        raise TaskDataError(f"n_train = {n_train}, but the training split has {len(train)} images.")
    return frame.reset_index(drop=True)


def load_metadata_task(spec, seed):
    """Train / validation / test arrays of image paths, labels and groups (``seed`` is unused: the split is
    fixed by the task's ``split_seed``). Both validation sets of the runner are the user's validation split."""
    if file_digest(spec["metadata"]) != spec["metadata_sha256"]:
        raise TaskDataError(f"{spec['metadata']} changed after the task was built; run the command again.")
    frame = split_frame(spec)
    data = Bunch()
    for split, key in (("train", "train"), ("val", "val"), ("test", "test")):
        part = frame[frame["split"] == split]
        data[f"X_{key}"] = part["path"].to_numpy(dtype=str)
        data[f"y_{key}"], data[f"s_{key}"] = part["y"].to_numpy(), part["s"].to_numpy()
    for name in ("X", "y", "s"):
        data[f"{name}_val_train"] = data[f"{name}_val"]
    return data


def metadata_task(metadata, *, name=None, y_values=None, s_values=None, val_share=None, test_share=None,
                  split_seed=0, image_size=224, provider=None):
    """A task spec for :func:`benchmarks.tasks.load_task` from a metadata CSV (read here to fix its size and hash).

    ``val_share`` / ``test_share``: how to split a file without a ``split`` column (None: it must have one).
    ``provider``: a provider spec (``{"kind": "folder", "root": ...}`` or a diffusers one) or None.
    """
    metadata = Path(metadata).resolve()
    frame = read_metadata(metadata, y_values=y_values, s_values=s_values)
    shares = None
    if "split" not in frame:
        shares = {"val_share": 0.1 if val_share is None else val_share,
                  "test_share": 0.2 if test_share is None else test_share}
    elif val_share is not None or test_share is not None:
        raise TaskDataError(f"{metadata} has a split column; --val-share / --test-share apply only to a file "
                            "without one.")
    spec = {"name": name or f"custom {metadata.stem}", "dataset": "metadata", "metadata": str(metadata),
            "metadata_sha256": file_digest(metadata), "y_values": list(y_values) if y_values else None,
            "s_values": list(s_values) if s_values else None, "split": shares, "split_seed": int(split_seed),
            "image_size": image_size, "provider": provider}
    spec["n_train"] = int((split_frame(spec)["split"] == "train").sum())
    return spec


def unreadable_images(paths, *, desc="checking images"):
    """Messages for the files among ``paths`` that are missing or not complete images (all are checked)."""
    bad = []
    for path in tqdm(paths, desc=desc, unit="file", disable=len(paths) < 2000, leave=False):
        try:
            check_image_files([path])
        except ValueError as exc:
            bad.append(str(exc))
    return bad


def check_synthetic_folder(root, counts):
    """Each cell folder of ``root`` exists, holds at least ``counts[cell]`` images, and all of them read."""
    provider = ImageFolderProvider(root)
    problems = []
    for cell in CELLS:
        try:
            files = provider.cell_files(cell)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if len(files) < counts[cell]:
            problems.append(f"{Path(root) / f'{cell[0]}_{cell[1]}'} holds {len(files)} images; a run needs "
                            f"{counts[cell]} (lower --synthetic-ratio or add images).")
        bad = unreadable_images([str(f) for f in files], desc=f"checking synthetic {cell[0]}_{cell[1]}")
        if bad:
            problems.append(f"{len(bad)} unreadable synthetic images: {_shown(bad)}")
    if problems:
        raise TaskDataError("The synthetic folder cannot serve this task:\n  " + "\n  ".join(problems))


def check_custom_task(spec, *, synthetic_counts=None, n_per_cell=None):
    """Everything that can be checked before training; returns the split's cell counts (``cell_counts``).

    Reads every image file (without decoding its pixels); with ``synthetic_counts`` (images per cell a run
    requests) also checks a synthetic folder, or that a diffusers provider's ``n_per_cell`` covers them.
    Raises :class:`TaskDataError`.
    """
    frame = split_frame(spec)
    counts = cell_counts(frame)
    empty = [f"{split} {cell}" for split in SPLITS for cell in counts.columns if counts.loc[split, cell] == 0]
    if empty:
        raise TaskDataError(f"Every (y, s) cell needs images in train, val and test; none in: {', '.join(empty)}.\n"
                            f"{counts.to_string()}")
    bad = unreadable_images(frame["path"].tolist())
    if bad:
        raise TaskDataError(f"{len(bad)} of {len(frame)} images in {spec['metadata']} cannot be read: {_shown(bad)}")
    provider = spec.get("provider") or {}
    if synthetic_counts is not None and provider.get("kind") == "folder":
        check_synthetic_folder(provider["root"], synthetic_counts)
    if synthetic_counts is not None and provider.get("kind") == "diffusers" and n_per_cell:
        short = {cell: n for cell, n in synthetic_counts.items() if n > n_per_cell}
        if short:
            raise TaskDataError(f"--n-per-cell {n_per_cell} is fewer than a run requests ({short}); raise it or lower "
                                "--synthetic-ratio.")
    return counts


def write_split(spec, path):
    """``split.csv``: every row's absolute path, y, s and split, as the task uses them (written atomically)."""
    return atomic_write(path, split_frame(spec)[["path", "y", "s", "split"]].to_csv(index=False))
