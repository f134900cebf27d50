"""``aimfair-bench`` / ``python -m aimfair_bench``: run a benchmark suite and write its records, tables and plots.

Examples::

    aimfair-bench quick                        # every method on the embedded data, 3 seeds (CPU, minutes)
    aimfair-bench topk --seeds 0 1 2 3 4       # the paper's Fig. 5 on the embedded data
    aimfair-bench fashion --n-jobs 4           # coloured Fashion-MNIST at scale, 4 local processes
    aimfair-bench paper --celeba-root ~/data/celeba --utkface-root ~/data/UTKFace \\
        --pipeline stabilityai/stable-diffusion-2-1 --synthetic-cache ~/synthetic
    aimfair-bench quick --backend dask --scheduler tcp://10.0.0.5:8786 --n-jobs 32
    aimfair-bench custom --metadata data/meta.csv --synthetic-dir data/synthetic --out results/mine \\
        --methods erm jtt full aimfair --seeds 0 1 2 --image-size 224 --width 64
    aimfair-bench panel                        # the defaults panel: four data families, 5 seeds
    aimfair-bench fairif-tabular               # FairIF's Table 4 (Adult, German, COMPAS); --help for its options
    aimfair-bench fadm-adult                   # FADM's Table 1 (Adult's race domains); --help for its options
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from aimfair_plugin.utils import resolve_device

from .custom import TaskDataError, check_custom_task, metadata_task, write_split
from .domain_gap import GAP_REFERENCES, batchnorm_tables, gap_measures, gap_summary, plot_domain_gap
from .methods import METHODS
from .panel import panel_probe, panel_tables
from .plots import plot_mask_blocks, plot_topk, plot_tradeoff
from .report import markdown_report, records_frame, summarise
from .runner import BACKENDS, cache_folder, collect_records, make_jobs, run_jobs
from .selection import RULES, at_checkpoint, checkpoint_frame, paired_frame, select_variants, selected_frame
from .suites import CUSTOM_ERM_LRS, SUITES, TUNED_SUITES, build_suite
from .tasks import make_provider, synthetic_counts_needed


def build_parser():
    parser = argparse.ArgumentParser(
        prog="aimfair-bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("suite", nargs="?", default="quick", choices=list(SUITES), help="which suite (default quick)")
    parser.add_argument("--out", help="results folder (default results/SUITE); re-running resumes in it")
    run = parser.add_argument_group("what runs")
    run.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the suite's)")
    run.add_argument("--methods", nargs="+", help="method keys (default: the suite's), e.g. erm jtt aimfair")
    run.add_argument("--tasks", nargs="+", help="keep only tasks whose name contains one of these words")
    run.add_argument("--no-checkpoints", action="store_true",
                     help="keep every run's last epoch instead of one checkpoint per selection rule (no per-epoch "
                          "scoring of the validation sets; faster, see the quick results page)")
    run.add_argument("--list", action="store_true", help="print the jobs and whether they have records; run nothing")
    run.add_argument("--report-only", action="store_true",
                     help="write the tables and plots from the records that exist; run nothing (the tables say how "
                          "many runs they hold)")
    run.add_argument("--tuned", help="tuned settings for the quick and baselines suites (default: benchmarks/tuned.json, written "
                                     "by `aimfair-bench tune` as OUT/tuned.json)")
    par = parser.add_argument_group("where it runs")
    par.add_argument("--n-jobs", type=int,
                     help="parallel jobs (joblib; -1 = all cores). Default: one single-threaded job per CPU core on "
                          "the CPU (faster than one job on all cores for these small networks), 1 on a GPU")
    par.add_argument("--backend", default="loky", choices=BACKENDS,
                     help="joblib backend: loky (local processes), dask or ray (an existing cluster)")
    par.add_argument("--scheduler", help="dask scheduler address or ray address for --backend dask/ray")
    par.add_argument("--device", default="auto", help="torch device of every job (default: cuda when present)")
    size = parser.add_argument_group("overrides of the suite's settings (every task / method)")
    size.add_argument("--n-train", type=int, help="real training images")
    size.add_argument("--n-test", type=int, help="test images")
    size.add_argument("--n-val-per-cell", type=int,
                      help="images per (y, s) cell of the balanced, group-labelled validation set (group_val rule, "
                           "FairIF)")
    size.add_argument("--n-val-train", type=int,
                      help="images held out of the biased training draw for the label_free rule")
    size.add_argument("--minority-share", type=float, help="minority share within each class of the training set")
    size.add_argument("--image-size", type=int, help="image side in pixels")
    size.add_argument("--width", type=int, help="ResNet base width (64 = standard ResNet-18)")
    size.add_argument("--epochs", type=int, help="pre-training (ERM and baselines) epochs")
    size.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs")
    size.add_argument("--finetune-lrs", type=float, nargs="+",
                      help="fine-tuning learning rates; several = a search, each a variant")
    size.add_argument("--top-k", type=float, help="AIM-Fair k (int count, or fraction of tensors if < 1)")
    size.add_argument("--bias-ratio", type=float, help="majority share per class of the biased synthetic set S1")
    size.add_argument("--synthetic-ratio", type=float, help="size of S1 and S2 relative to the real training set")
    size.add_argument("--pretrained", help="torchvision-style checkpoint to start every ResNet from")
    data = parser.add_argument_group("data (the paper and fashion suites)")
    data.add_argument("--celeba-root", help="CelebA folder (img_align_celeba/, list_attr_celeba.txt, ...)")
    data.add_argument("--utkface-root", help="UTKFace image folder")
    data.add_argument("--fashion-path", help="Fashion-MNIST IDX folder (default: Debian's dataset-fashion-mnist)")
    data.add_argument("--pipeline", help="diffusers model id or folder for the synthetic images")
    data.add_argument("--synthetic-cache", help="folder of the synthetic image cache (default OUT/synthetic)")
    data.add_argument("--inference-steps", type=int, help="diffusion steps per image (paper: 50)")
    data.add_argument("--generation-size", type=int, help="side of generated images (default: the model's)")
    own = parser.add_argument_group(
        "your own data (the custom suite; see benchmarks/custom.py for the metadata format)")
    own.add_argument("--metadata", help="CSV with columns path, y, s and optionally split (train/val/test)")
    own.add_argument("--synthetic-dir", help="synthetic images in {y}_{s}/*.png folders (or use --pipeline)")
    own.add_argument("--y-values", type=_pair, metavar="V0,V1",
                     help="the y values meaning 0 and 1 when the column is not 0/1 or True/False (write "
                          "--y-values=-1,1 for a leading minus)")
    own.add_argument("--s-values", type=_pair, metavar="V0,V1", help="the same for s")
    own.add_argument("--val-share", type=float, help="share of each (y, s) cell for validation (default 0.1), for "
                                                     "a file without a split column")
    own.add_argument("--test-share", type=float, help="share of each (y, s) cell for testing (default 0.2)")
    own.add_argument("--split-seed", type=int, default=0, help="seed of that split (default 0)")
    own.add_argument("--name", help="task name in the records and tables (default: custom METADATA_STEM)")
    own.add_argument("--target-words", type=_pair, metavar="W0,W1",
                     help="with --pipeline: words for y = 0 and y = 1 in the prompts (default: --y-values)")
    own.add_argument("--protected-words", type=_pair, metavar="W0,W1",
                     help="with --pipeline: words for s = 0 and s = 1 (default: --s-values)")
    own.add_argument("--prompt-vocabulary", default="celeba", choices=("celeba", "utkface"),
                     help="details the contextual prompts vary (face attributes / expressions, hair, age)")
    own.add_argument("--erm-lrs", type=float, nargs="+",
                     help="the ERM recipe's learning rates searched on validation data before fine-tuning (the "
                          "group_val choice is the model every fine-tuning method starts from; default "
                          "0.001 0.01 0.1; one value fixes it). The fine-tuning rates: --finetune-lrs (default "
                          "0.001 0.01 0.1 0.5, chosen per rule)")
    own.add_argument("--n-per-cell", type=int,
                     help="with --pipeline: images to generate per (y, s) cell (default: what a run requests)")
    out = parser.add_argument_group("output")
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _pair(text):
    """``"a,b"`` -> ``("a", "b")`` (argparse type of the two-value options)."""
    values = tuple(v.strip() for v in text.split(","))
    if len(values) != 2 or not all(values):
        raise argparse.ArgumentTypeError(f"expected two comma-separated values, got {text!r}")
    return values


OWN_DATA_OPTIONS = ("metadata", "synthetic_dir", "y_values", "s_values", "val_share", "test_share", "name",
                    "target_words", "protected_words", "n_per_cell", "erm_lrs")
NOT_FOR_OWN_DATA = ("n_test", "n_val_per_cell", "n_val_train", "minority_share")


def custom_suite(args):
    """The custom suite from the command line: the metadata task and its synthetic-data provider spec."""
    if not args.metadata:
        raise TaskDataError("The custom suite needs --metadata FILE.csv (columns path, y, s and optionally split).")
    unused = [f"--{k.replace('_', '-')}" for k in NOT_FOR_OWN_DATA if getattr(args, k) is not None]
    if unused:
        raise TaskDataError(f"{', '.join(unused)} do not apply to your own data: its splits come from the metadata "
                            "(a split column, or --val-share / --test-share).")
    if args.synthetic_dir and args.pipeline:
        raise TaskDataError("Give either --synthetic-dir or --pipeline, not both.")
    provider = None
    if args.synthetic_dir:
        if not Path(args.synthetic_dir).is_dir():
            raise TaskDataError(f"No synthetic folder at {args.synthetic_dir}.")
        provider = {"kind": "folder", "root": str(Path(args.synthetic_dir).resolve())}
    elif args.pipeline:
        words = {"target_words": args.target_words or args.y_values,
                 "protected_words": args.protected_words or args.s_values}
        missing = [f"--{k.replace('_', '-')}" for k, v in words.items() if not v]
        if missing:
            raise TaskDataError(f"--pipeline needs {' and '.join(missing)}: the words for the values 0 and 1 that go "
                                "into the prompts, e.g. --target-words 'not smiling,smiling'.")
        provider = {"kind": "diffusers", "pipeline": args.pipeline, "cache_dir": None,
                    **{k: list(v) for k, v in words.items()}, "prompt_vocabulary": args.prompt_vocabulary,
                    "n_prompts": 50, "num_inference_steps": 50, "guidance_scale": 9.0, "batch_size": 8,
                    "generation_size": None, "seed": 0}
    task = metadata_task(args.metadata, name=args.name, y_values=args.y_values, s_values=args.s_values,
                         val_share=args.val_share, test_share=args.test_share, split_seed=args.split_seed,
                         image_size=args.image_size or 224, provider=provider)
    return build_suite("custom", task=task)


def check_own_data(suite, n_per_cell=None):
    """The custom suite's checks before any training (see ``benchmarks.custom.check_custom_task``); prints the
    split and which methods read group labels."""
    task = suite.tasks[0]
    needed = None
    if task.get("provider"):
        needed = synthetic_counts_needed(task, task["n_train"], suite.finetune["synthetic_ratio"],
                                         suite.finetune["bias_ratio"])
    counts = check_custom_task(task, synthetic_counts=needed, n_per_cell=n_per_cell)
    how = ("the metadata's split column" if task["split"] is None else
           f"drawn per cell: val {task['split']['val_share']}, test {task['split']['test_share']}, "
           f"split seed {task['split_seed']}")
    print(f"Task {task['name']!r}: {task['metadata']}, split {how}\n{counts.to_string()}")
    seen = {m: METHODS[m].group_labels for m in suite.methods if METHODS[m].group_labels != "none"}
    print("Group labels s: read by " + (", ".join(f"{m} ({where} split)" for m, where in seen.items()) or "no method")
          + "; every other method is fit without them. All methods are evaluated with them on val and test.")


def apply_overrides(suite, args, out):
    """Apply command-line overrides to a suite in place; returns it."""
    if args.seeds:
        suite.seeds = tuple(args.seeds)
    if args.methods:
        suite.methods = tuple(args.methods)
    if args.finetune_lrs:
        suite.finetune_lrs = tuple(args.finetune_lrs) if len(args.finetune_lrs) > 1 else ()
        suite.finetune["finetune_lr"] = args.finetune_lrs[0]
    if args.top_k is not None:
        suite.finetune["top_k"] = int(args.top_k) if args.top_k >= 1 else args.top_k
    recipe = {"width": args.width, "max_epochs": args.epochs, "pretrained": args.pretrained}
    suite.recipe.update({k: v for k, v in recipe.items() if v is not None})
    if "image_size" in suite.recipe and args.image_size:
        suite.recipe["image_size"] = args.image_size
    for key, value in (("finetune_epochs", args.finetune_epochs), ("bias_ratio", args.bias_ratio),
                       ("synthetic_ratio", args.synthetic_ratio)):
        if value is not None:
            suite.finetune[key] = value
    roots = {"celeba": args.celeba_root, "utkface": args.utkface_root}
    kept = []
    for task in suite.tasks:
        keys = ("n_train", "image_size") if task["dataset"] == "metadata" else (
            "n_train", "n_test", "n_val_per_cell", "n_val_train", "minority_share", "image_size")
        for key, value in (("n_train", args.n_train), ("n_test", args.n_test), ("n_val_per_cell", args.n_val_per_cell),
                           ("n_val_train", args.n_val_train), ("minority_share", args.minority_share),
                           ("image_size", args.image_size)):
            if value is not None and key in keys:
                task[key] = value
        if task["dataset"] == "coloured_fashion" and args.fashion_path:
            task["path"] = str(Path(args.fashion_path).resolve())
        if task["dataset"] in roots:
            if not roots[task["dataset"]]:
                print(f"Leaving out task {task['name']!r}: no --{task['dataset']}-root given.")
                continue
            task["root"] = str(Path(roots[task["dataset"]]).resolve())
        provider = task.get("provider") or {}
        if provider.get("kind") == "diffusers":
            if args.pipeline:
                pipe = Path(args.pipeline)
                provider["pipeline"] = str(pipe.resolve()) if pipe.exists() else args.pipeline
            provider["cache_dir"] = str(Path(args.synthetic_cache or Path(out) / "synthetic").resolve())
            for key, value in (("num_inference_steps", args.inference_steps),
                               ("generation_size", args.generation_size)):
                if value is not None:
                    provider[key] = value
        if args.tasks and not any(word.lower() in task["name"].lower() for word in args.tasks):
            continue
        kept.append(task)
    if not kept:
        raise SystemExit(f"No task of suite {suite.name!r} is left to run (see the messages above).")
    suite.tasks = kept
    return suite


def prepare_synthetic(suite, n_per_cell=None):
    """Generate each diffusers task's synthetic images once, in this process, before the jobs read them
    (at least ``n_per_cell`` per cell when given)."""
    for task in suite.tasks:
        if (task.get("provider") or {}).get("kind") != "diffusers":
            continue
        provider = make_provider(task, None, 0)
        provider.verbose = 1
        counts = synthetic_counts_needed(task, task["n_train"], suite.finetune["synthetic_ratio"],
                                         suite.finetune["bias_ratio"])
        if n_per_cell:
            counts = {cell: max(n, n_per_cell) for cell, n in counts.items()}
        prompts = provider.prompts.build()  # make_provider gives a builder
        print(f"Synthetic images for {task['name']}: {sum(counts.values())} in {provider.cache_dir}, e.g.\n"
              + "\n".join(f"  y={y}, s={s}: {prompts[(y, s)][0]}" for y, s in sorted(prompts)))
        provider.generate(counts, decode=False)


def default_n_jobs(device):
    """One job per CPU core on the CPU (each then runs single-threaded), one job on a GPU."""
    return 1 if not str(resolve_device(device)).startswith("cpu") else (os.cpu_count() or 1)


def write_tables(out, frame):
    """records.csv, selected.csv and paired.csv; returns (summary, paired)."""
    frame.to_csv(out / "records.csv", index=False)
    summary = summarise(frame)
    selected_frame(summary).to_csv(out / "selected.csv", index=False)
    paired = paired_frame(frame, summary)
    paired.to_csv(out / "paired.csv", index=False)
    checkpoint_frame(frame, summary).to_csv(out / "checkpoints.csv", index=False)
    return summary, paired


def write_tuned(out, summary, frame, seeds, rule="group_val"):
    """``tuned.json``: each method's variant chosen by ``rule``, its parameters, and where it came from."""
    chosen = select_variants(summary, rule)
    params = frame.drop_duplicates(["task", "method", "variant"]).set_index(["task", "method", "variant"])
    methods = {}
    for _, row in chosen.iterrows():
        score = RULES[rule][0]
        methods[row["method"]] = {
            "params": json.loads(params.loc[(row["task"], row["method"], row["variant"]), "variant_params"]),
            "variant": row["variant"], score: round(float(row[f"{score}_mean"]), 2),
            "grid_size": int((summary["method"] == row["method"]).sum())}
    source = (f"aimfair-bench tune: the {rule} choice (highest mean {RULES[rule][0]} over seeds "
              f"{', '.join(map(str, seeds))}) among each method's grid")
    path = out / "tuned.json"
    path.write_text(json.dumps({"source": source, "rule": rule, "seeds": list(seeds), "methods": methods}, indent=2)
                    + "\n")
    return path


def tune_recipe_lr(suite, args, out, n_jobs):
    """The custom suite's first stage: ERM over ``--erm-lrs`` (the paper's CelebA rate is not assumed to carry
    over), each rate's model scored on the validation split; the ``group_val`` choice (highest mean validation
    worst-group accuracy over the seeds) becomes the recipe every other method starts from. Sets
    ``suite.recipe["lr"]`` and returns the report's section saying what was searched and chosen."""
    lrs = tuple(args.erm_lrs or CUSTOM_ERM_LRS)
    if len(lrs) == 1:
        suite.recipe["lr"] = lrs[0]
        return f"\n## Learning rates\n\nERM recipe learning rate fixed at {lrs[0]} (`--erm-lrs`).\n"
    stage = dataclasses.replace(suite, methods=("erm",), variants={"erm": [{"lr": lr} for lr in lrs]},
                                finetune_lrs=())
    jobs = make_jobs(stage, device=args.device, checkpoints=not args.no_checkpoints)
    if args.list:  # what stage 1 runs; the rest is listed at the rate its records choose (the paper's before)
        from .runner import is_done, record_path

        for job in jobs:
            print(f"{'done' if is_done(out, job) else 'todo'}  {record_path(out, job)}")
    elif not args.report_only:
        print(f"Stage 1: the ERM recipe's learning rate among {list(lrs)} on validation data ({len(jobs)} runs)")
        run_jobs(jobs, out, n_jobs=n_jobs, backend=args.backend, scheduler=args.scheduler,
                 progress=not args.no_progress)
    frame = records_frame(collect_records(out, jobs))
    if frame.empty and args.list:
        return None
    if frame.empty:
        raise SystemExit("aimfair-bench custom: no stage-1 records to choose the ERM learning rate from; run it "
                         "without --report-only first.")
    summary = summarise(frame)
    lr_of = {row.variant: json.loads(row.variant_params)["lr"]
             for row in frame.drop_duplicates("variant").itertuples()}
    chosen = {rule: lr_of[select_variants(summary, rule).iloc[0]["variant"]] for rule in RULES}
    suite.recipe["lr"] = chosen["group_val"]
    rows = summary[summary["method"] == "erm"]
    table = pd.DataFrame({"ERM learning rate": [lr_of[v] for v in rows["variant"]], **{
        f"{r}: {RULES[r][0]} at its checkpoint (mean)": at_checkpoint(rows, r)[f"{RULES[r][0]}_mean"].round(2).to_numpy()
        for r in RULES}})  # what each rule read: every run at the epoch the rule kept
    print(f"ERM learning rate: {chosen['group_val']} (group_val; label_free would choose {chosen['label_free']})")
    return ("\n## Learning rates searched on validation data\n\n"
            f"The paper's CelebA rates (ERM 0.01, fine-tuning 0.5) are not assumed to carry over. ERM was trained at "
            f"each of {list(lrs)}; the `group_val` rule's choice, **{chosen['group_val']}** (the `label_free` rule "
            f"would choose {chosen['label_free']}), is the model every fine-tuning method starts from. Each "
            f"fine-tuning method ran at each of {list(suite.finetune_lrs) or [suite.finetune['finetune_lr']]} and the "
            "tables above show, under each rule, the rate that rule chose on validation data.\n\n"
            + table.to_markdown(index=False) + "\n")


def _scripts():
    """The paper-table commands that are not suites (their own data, methods and tables): name -> main."""
    from . import fadm_adult, fairif_tabular

    return {"fadm-adult": fadm_adult.main, "fairif-tabular": fairif_tabular.main}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _scripts():  # aimfair-bench fairif-tabular [its options]
        return _scripts()[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    out = Path(args.out or Path("results") / args.suite)
    own = [f"--{k.replace('_', '-')}" for k in OWN_DATA_OPTIONS if getattr(args, k) is not None]
    if args.suite != "custom" and own:
        raise SystemExit(f"{', '.join(own)} belong to the custom suite: aimfair-bench custom --metadata FILE ...")
    try:
        if args.suite == "custom":  # every check runs before anything is written or trained
            suite = apply_overrides(custom_suite(args), args, out)
            jobs = make_jobs(suite, device=args.device, checkpoints=not args.no_checkpoints)
            check_own_data(suite, args.n_per_cell)
        else:
            suite = build_suite(args.suite, **({"tuned_path": args.tuned} if args.tuned and args.suite in TUNED_SUITES
                                               else {}))
            suite = apply_overrides(suite, args, out)
            jobs = make_jobs(suite, device=args.device, checkpoints=not args.no_checkpoints)
    except ValueError as exc:  # bad data or settings (TaskDataError, unknown methods...): a message, no traceback
        raise SystemExit(f"aimfair-bench {args.suite}: {exc}") from None
    n_jobs = args.n_jobs if args.n_jobs is not None else default_n_jobs(args.device)
    recipe_section = None
    if args.suite == "custom":  # stage 1: the recipe's learning rate, chosen on validation data
        if not args.list:
            out.mkdir(parents=True, exist_ok=True)
        recipe_section = tune_recipe_lr(suite, args, out, n_jobs)
        jobs = make_jobs(suite, device=args.device, checkpoints=not args.no_checkpoints)
    if args.list:
        from .runner import is_done, record_path

        for job in jobs:
            state = "done" if is_done(out, job) else "todo"
            print(f"{state}  {record_path(out, job)}")
        return 0
    print(f"Suite {suite.name!r}: {suite.description}\n{len(jobs)} runs -> {out}")
    start = time.perf_counter()
    if args.suite == "custom":
        out.mkdir(parents=True, exist_ok=True)
        print(f"Split: {write_split(suite.tasks[0], out / 'split.csv')}")
    if args.report_only:
        ran = 0
    else:
        prepare_synthetic(suite, args.n_per_cell)
        ran = run_jobs(jobs, out, n_jobs=n_jobs, backend=args.backend, scheduler=args.scheduler,
                       progress=not args.no_progress)
    wall = time.perf_counter() - start
    records = collect_records(out, jobs)
    frame = records_frame(records)
    summary, paired = write_tables(out, frame)
    title = f"aimfair-bench {suite.name}: {len(records)} runs, {len(suite.seeds)} seeds"
    report = markdown_report(frame, title, paired=paired) + (recipe_section or "")
    (out / "report.md").write_text(report)
    print("\n" + report)
    if suite.name == "tune":
        print(f"Tuned settings (group_val): {write_tuned(out, summary, frame, suite.seeds)}")
    if suite.name == "domain-gap":
        measures = gap_measures(jobs, records, cache_folder(out))
        measures.to_csv(out / "gap_measures.csv", index=False)
        # every method against each of the competitors that choose what to tune differently
        versus = paired_frame(frame, summary, references=GAP_REFERENCES)
        versus.to_csv(out / "gap_paired.csv", index=False)
        means, diffs = gap_summary(measures, paired)
        print("\nGap measures per level (mean over seeds):\n" + means.round(2).to_string(index=False))
        print("\nWST(method) - WST(full fine-tuning), group_val rule, 95 % paired t interval:\n"
              + diffs.round(2).to_string(index=False))
        if not args.no_plots:
            print(f"Plot: {plot_domain_gap(measures, paired, out / 'domain_gap.png')}")
    if suite.name == "batchnorm":
        gap_measures(jobs, records, cache_folder(out)).to_csv(out / "gap_measures.csv",
                                                                                       index=False)
        means, versus = batchnorm_tables(frame)
        means.to_csv(out / "bn_means.csv", index=False)
        versus.to_csv(out / "bn_paired.csv", index=False)
        print("\nTest WST per level, method and bn_statistics (mean, std, seeds):\n" + means.round(2).to_string(index=False))
        print("\nPaired differences of test WST (95 % t interval):\n" + versus.round(2).to_string(index=False))
    if suite.name in ("panel", "panel-holdout"):
        families = {task["name"]: task["family"] for task in suite.tasks}
        means, versus, verdict, by_family = panel_tables(frame, families, choose=suite.name == "panel")  # holdout: no choice
        probe = panel_probe(frame, families)
        for table, file in ((means, "panel_means.csv"), (versus, "panel_paired.csv"), (verdict, "panel_verdict.csv"),
                            (by_family, "panel_family_verdict.csv"), (probe, "panel_probe.csv")):
            table.to_csv(out / file, index=False)
        print("\nCandidate defaults over the panel's tasks (test WST; bars: ERM + 5, best fixed - 5):\n"
              + verdict.round(2).to_string(index=False))
    if not args.no_plots:
        made = [plot_tradeoff(summary, out / "tradeoff.png"), plot_topk(summary, out / "topk.png"),
                plot_mask_blocks(records, out / "mask_blocks.png")]
        print("Plots: " + ", ".join(str(p) for p in made if p is not None))
    print(f"Records: {out / 'records'}  CSV: {out / 'records.csv'}, {out / 'selected.csv'}, {out / 'paired.csv'}  "
          f"Tables: {out / 'report.md'}")
    threads = torch.get_num_threads() if n_jobs == 1 else max(1, torch.get_num_threads() // n_jobs)
    print(f"Wall time: {wall:.1f} s for {ran} runs ({len(jobs) - ran} reused), {n_jobs} parallel job(s) with "
          f"{threads} torch thread(s) each, device {args.device}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
