"""Run a suite's (task, method, variant, seed) jobs: resumable, with a progress bar, in parallel with joblib.

Each job's record is one JSON file, ``{out}/records/{task}/{method}[__{variant}]/seed{seed}.json``,
holding every setting, a hash of them, the metrics, the 2x2 cell accuracies, the mask diagnostics of
fine-tuning methods, the wall time and the device. A re-run skips a job whose record exists with the
same settings hash; a record with other settings is recomputed and replaced. Records are written by the
main process as each job finishes (atomically), so an interrupted run loses only the jobs in flight.

Parallel runs use joblib: ``n_jobs`` local processes (loky), or an existing dask or ray cluster through
joblib's ``dask`` / ``ray`` backends. ERM jobs run first, so the fine-tuning jobs of a seed find the
pre-trained model in ``{out}/cache`` instead of training it again; runs that do not start from it (the
baselines, training on synthetic data) share the first phase with ERM. Runs with and without checkpoint selection
share the one cache folder: a cached model keeps at most its best checkpoint per rule, and a job that needs
a curve the cached model was not scored with trains its own (:func:`benchmarks.methods.fit_scored`).
"""

import dataclasses
import datetime
import hashlib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils import Bunch
from tqdm.auto import tqdm

import aimfair_plugin
from aimfair_plugin.metrics import fairness_report
from aimfair_plugin.utils import atomic_write, resolve_device

from .checkpoints import BN_IMAGES, last_predictions, select_checkpoints
from .methods import (
    METHODS,
    VALIDATION_SETS,
    Checkpointing,
    fit_method,
    held_out_split,
    pretrained_erm,
    recipe_overrides,
    visible_data,
)
from .tasks import load_task

BACKENDS = ("loky", "dask", "ray")


def variant_label(params):
    """``"block=layer2, lr=0.01"`` style label of a variant's parameters ('' for none)."""
    short = {"finetune_lr": "ft_lr"}
    return ", ".join(f"{short.get(k, k)}={v}" for k, v in params.items())


def _slug(text):
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")


def settings_hash(settings):
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One (task, method, variant, seed) run of a suite.

    ``to_settings()`` is everything that determines its result (the record's ``settings``); its hash names the
    record, so a re-run skips a job whose record has the same hash. ``suite``, ``variant`` (the label) and
    ``variant_params`` (what the variant changes, shown in tables) describe it without changing the result.
    """

    task: dict
    method: str
    params: dict
    seed: int
    recipe: dict
    finetune: dict
    device: str = "auto"
    tuned_from: str = None
    suite: str = ""
    variant: str = ""
    variant_params: dict = field(default_factory=dict)
    pretrain_only: bool = False
    checkpoints: bool = True
    checkpoint_bn_images: int = BN_IMAGES

    def to_settings(self):
        """The settings dict (JSON-plain) that determines the run's result."""
        settings = {
            "task": self.task, "method": self.method, "params": self.params, "seed": int(self.seed),
            "recipe": self.recipe, "finetune": self.finetune if METHODS[self.method].uses_synthetic else None,
            "device": self.device,
            # what the record's per-rule checkpoints depend on (a record made without them is recomputed); a
            # chosen epoch is tested as it was scored (records made before that protocol lack "test")
            "checkpoints": ({"every_epoch": True, "bn_images": self.checkpoint_bn_images, "test": "as scored"}
                            if self.checkpoints else {"every_epoch": False}),
        }
        if self.tuned_from is not None:
            settings["tuned_from"] = self.tuned_from
        return _plain_json(settings)

    @property
    def settings_hash(self):
        return settings_hash(self.to_settings())


def _plain_json(value):
    """A JSON round trip: every value plain (tuples -> lists), as a record stores it."""
    return json.loads(json.dumps(value))


def _variants(suite, key):
    """``(shown, params, finetune)`` of each variant of method ``key``: what its label shows, its parameters,
    and its fine-tuning settings (a tuned or searched ``finetune_lr`` moves from the parameters to them)."""
    method = METHODS[key]
    lrs = list(suite.finetune_lrs) if method.finetunes and suite.finetune_lrs else [None]
    tuned = suite.tuned.get(key, {})
    for variant, lr in itertools.product(suite.variants.get(key, [{}]), lrs):
        shown = {**tuned, **variant, **({"finetune_lr": lr} if lr is not None and len(lrs) > 1 else {})}
        params = {**method.params, **tuned, **variant}
        finetune = dict(suite.finetune)
        if "finetune_lr" in params:  # a tuned fine-tuning lr is a fine-tuning setting
            finetune["finetune_lr"] = params.pop("finetune_lr")
        if lr is not None:  # a searched one wins
            finetune["finetune_lr"] = lr
        yield shown, params, finetune


def make_jobs(suite, *, device="auto", checkpoints=True):
    """All jobs of a suite (a list of :class:`Job`), ERM first within each (task, seed); ``checkpoints=False``:
    every run keeps its last epoch (no per-epoch scoring, :mod:`benchmarks.checkpoints`), as in a suite built
    with ``checkpoints=False``."""
    checkpoints = bool(checkpoints) and suite.checkpoints
    unknown = [m for m in suite.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; expected some of {list(METHODS)}.")
    order = sorted(suite.methods, key=lambda m: (m != "erm", list(METHODS).index(m)))
    synthetic = [m for m in order if METHODS[m].uses_synthetic]
    for task in suite.tasks:
        if task.get("provider") is None and synthetic:
            raise ValueError(f"Task {task['name']!r} has no synthetic-data provider, which {synthetic} need "
                             "(for your own data: --synthetic-dir or --pipeline).")
    variants = {key: list(_variants(suite, key)) for key in order}
    tuned_from = suite.tuned_from if suite.tuned else None
    return [
        Job(task=_plain_json(task), method=key, params=_plain_json(params), seed=int(seed),
            recipe=_plain_json(suite.recipe),
            finetune=_plain_json(finetune) if METHODS[key].uses_synthetic else {}, device=device,
            tuned_from=tuned_from if suite.tuned.get(key) else None, suite=suite.name,
            variant=variant_label(shown), variant_params=_plain_json(shown), checkpoints=bool(checkpoints))
        for task, seed in itertools.product(suite.tasks, suite.seeds)
        for key in order
        for shown, params, finetune in variants[key]
    ]


def record_path(out, item):
    """Where the record of a job (or a record itself: its task is then a name) lives."""
    if isinstance(item, Job):
        task, method, variant, seed = item.task["name"], item.method, item.variant, item.seed
    else:
        task, method, variant, seed = item["task"], item["method"], item["variant"], item["seed"]
    name = method + (f"__{_slug(variant)}" if variant else "")
    return Path(out) / "records" / _slug(task) / name / f"seed{seed}.json"


def is_done(out, job):
    """Whether a record of this job with the same settings exists (an unreadable file counts as missing)."""
    path = record_path(out, job)
    try:
        return json.loads(path.read_text())["settings_hash"] == job.settings_hash
    except (OSError, ValueError, KeyError):
        return False


def write_record(out, record):
    path = record_path(out, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(record, indent=2, default=_plain))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Cannot write {type(value).__name__} to a record.")


def evaluate(name, model, X, y, s, *, eo_agg="max", **extra):
    """One record: method, the fairness report (ACC/WST/EO/STD/...) and the 2x2 cell accuracies.

    ``eo_agg``: "max" is fairlearn's equalized odds difference, "mean" the AIM-Fair paper's Eq. 9.
    """
    return evaluate_predictions(name, y, model.predict(X), s, eo_agg=eo_agg, **extra)


def evaluate_predictions(name, y, pred, s, *, eo_agg="max", **extra):
    """:func:`evaluate` from predictions already made."""
    report, cells = fairness_report(y, pred, sensitive_features=s, agg=eo_agg, return_cells=True)
    record = {"method": name, **extra, **report.round(3).to_dict()}
    # every (class, group) cell: the paper's four for a binary task, all of them with more classes or groups
    record.update({f"cell_y{a}_s{b}": round(float(cells.loc[a, b]), 2) for a in cells.index for b in cells.columns})
    return record


def run_job(job, cache_dir, n_threads=None):
    """Fit and evaluate one job; returns its record (nothing is written here), or None for a pre-training."""
    if n_threads:
        torch.set_num_threads(n_threads)
    start = time.perf_counter()
    data = load_task(job.task, job.seed)
    if job.pretrain_only:  # the ERM model, scored as the seed's ERM job scores it
        pretrained_erm(job, Bunch(**data, checkpointing=Checkpointing(job, data)), cache_dir)
        return None
    model = fit_method(job, visible_data(job, data), cache_dir)

    def scores(model, X, y, s):  # a split's metrics without the method name
        return {k: v for k, v in evaluate(job.method, model, X, y, s, eo_agg="mean").items() if k != "method"}

    metrics = scores(model, data.X_test, data.y_test, data.s_test)
    preds = (last_predictions(model) if job.checkpoints else None) or {
        name: model.predict(data[f"X_{split}"]) for name, split in VALIDATION_SETS.items()}
    validation = {name: {k: v for k, v in evaluate_predictions(
        job.method, data[f"y_{split}"], preds[name], data[f"s_{split}"], eo_agg="mean").items() if k != "method"}
        for name, split in VALIDATION_SETS.items()}
    checkpoints = select_checkpoints(
        model, data, VALIDATION_SETS, scores, last={"metrics": metrics, "validation": validation},
    ) if job.checkpoints else {"reason": "checkpoint selection was turned off (--no-checkpoints)"}
    record = {
        "suite": job.suite, "task": job.task["name"], "method": job.method,
        "method_name": METHODS[job.method].label, "group_labels": METHODS[job.method].group_labels,
        "variant": job.variant,
        "variant_params": job.variant_params, "seed": job.seed, "metrics": metrics,
        # read by model selection only (benchmarks.selection); the test metrics above never are
        "validation": validation,
        # every epoch's validation scores and the epoch each rule keeps (benchmarks.checkpoints)
        "checkpoints": checkpoints,
        "n_test": int(len(data.y_test)), "n_train": int(len(data.y_train)),
        "n_val_train": int(len(data.y_val_train)), "n_val_group": int(len(data.y_val)),
        "wall_s": round(time.perf_counter() - start, 2), "device": str(resolve_device(job.device)),
        "torch": torch.__version__, "aimfair_plugin": aimfair_plugin.__version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings_hash": job.settings_hash, "settings": job.to_settings(),
    }
    if hasattr(model, "mask_report_"):
        gaps = model.gradient_gaps_
        record["mask"] = {
            **{k: v for k, v in model.mask_report_.items() if k != "selected_per_block"},
            "selected_per_block": model.mask_report_["selected_per_block"],
            "tensors_per_block": gaps.groupby("block", sort=False).size().astype(int).to_dict(),
        }
    if getattr(model, "selected_candidate_", None) is not None:  # the held-out guard was on
        record["guard"] = {"selected": _plain_json(model.selected_candidate_),
                           "candidates": _plain_json(model.finetune_scores_.to_dict("records")),
                           "probe": probe_record(getattr(model, "group_probe_", None), job, data)}
    return record


def probe_record(probe, job, data):
    """The guard's group probe as a record keeps it: its own numbers, and (where it inferred groups) its accuracy
    and balanced accuracy on the held-out images' true groups, which the method never saw; not the groups."""
    if probe is None:
        return None
    out = {key: value for key, value in probe.items() if key != "groups"}
    if probe.get("groups") is not None:
        truth = held_out_split(job.params["validate_on"], data)[2]
        out["real_accuracy"] = float(np.mean(np.asarray(probe["groups"]) == truth))
        out["real_balanced_accuracy"] = float(balanced_accuracy_score(truth, probe["groups"]))
    return _plain_json(out)


def _parallel_config(backend, n_jobs, scheduler):
    if backend == "dask":
        from dask.distributed import Client  # noqa: F401  (registers joblib's "dask" backend)

        client = Client(scheduler) if scheduler else None
        return joblib.parallel_config(backend="dask", n_jobs=n_jobs), client
    if backend == "ray":
        import ray
        from ray.util.joblib import register_ray

        register_ray()
        if scheduler and not ray.is_initialized():
            ray.init(address=scheduler)
        return joblib.parallel_config(backend="ray", n_jobs=n_jobs), None
    return joblib.parallel_config(backend="loky", n_jobs=n_jobs), None


def run_jobs(jobs, out, *, n_jobs=1, backend="loky", scheduler=None, progress=True, log=print):
    """Run the jobs that have no record yet; returns the number run. ERM jobs go first."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if not (isinstance(n_jobs, int) and (n_jobs >= 1 or n_jobs == -1)):
        raise ValueError(f"n_jobs must be a positive int or -1, got {n_jobs!r}.")
    out = Path(out)
    cache_dir = str(cache_folder(out))
    todo = [job for job in jobs if not is_done(out, job)]
    if len(todo) < len(jobs):
        log(f"{len(jobs) - len(todo)} of {len(jobs)} runs already have records with the same settings; skipping them.")
    # Phase 1: everything that needs no pre-trained ERM model (ERM itself, the recipe pre-trainings, the
    # baselines and synthetic-data runs trained from scratch); phase 2: what starts from it. Longest first,
    # so parallel workers finish together.
    first = [j for j in todo if not needs_pretrained_erm(j)] + pretraining_jobs(todo)
    phases = [sorted(first, key=lambda j: -METHODS[j.method].cost),
              sorted([j for j in todo if needs_pretrained_erm(j)], key=lambda j: -METHODS[j.method].cost)]
    workers = os.cpu_count() if n_jobs == -1 else n_jobs
    threads = max(1, torch.get_num_threads() // workers) if backend == "loky" else None
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="runs", unit="run", disable=not progress)
    try:
        for phase in phases:
            if not phase:
                continue
            if n_jobs == 1 and backend == "loky":
                results = (run_job(job, cache_dir, threads) for job in phase)
                for record in results:
                    _finish(out, record, bar)
                continue
            config, client = _parallel_config(backend, n_jobs, scheduler)
            try:
                with config:
                    results = joblib.Parallel(return_as="generator_unordered")(
                        joblib.delayed(run_job)(job, cache_dir, threads) for job in phase)
                    for record in results:
                        _finish(out, record, bar)
            finally:
                if client is not None:
                    client.close()
    finally:
        bar.close()
    return len(todo)


def cache_folder(out):
    """Where a run's pre-trained models are cached: ``OUT/cache`` (one folder, with or without checkpoints)."""
    return Path(out) / "cache"


def needs_pretrained_erm(job):
    """Whether a job starts from (or reads) the suite-recipe ERM model of its seed."""
    return METHODS[job.method].starts_from_erm


def pretraining_jobs(jobs):
    """One pre-training per (task, seed) whose fine-tuning or FairIF jobs need the suite-recipe ERM model and
    whose ERM job does not train it (a tuned ERM learning rate); run with the ERM jobs, before the rest."""
    needs = {}
    for job in jobs:
        if needs_pretrained_erm(job):
            needs.setdefault((job.task["name"], job.seed), job)
    trained = {(j.task["name"], j.seed) for j in jobs if j.method == "erm"
               and all(j.recipe.get(k) == v for k, v in recipe_overrides(j).items())}  # e.g. a tuned lr = the recipe's
    return [dataclasses.replace(job, pretrain_only=True) for key, job in needs.items() if key not in trained]


def _finish(out, record, bar):
    if record is None:  # a pre-training: its model is in the cache, there is no record
        return
    write_record(out, record)
    m = record["metrics"]
    bar.set_postfix_str(f"{record['method']} {record['variant']} seed {record['seed']}: "
                        f"ACC {m['ACC']:.1f} WST {m['WST']:.1f} EO {m['EO']:.1f}".replace("  ", " "))
    bar.update()


def collect_records(out, jobs):
    """The records of ``jobs`` that exist with the jobs' settings (older records with other settings are ignored)."""
    return [json.loads(record_path(out, job).read_text()) for job in jobs if is_done(out, job)]
