"""Results pages for the documentation, generated from a benchmark's output folder (nothing typed by hand).

``python -m aimfair_bench.pages results/quick --name quick --measured-at COMMIT`` copies the suite's outputs
(``report.md``, ``selected.csv``, ``paired.csv``, the suite's own tables and plots) to ``docs/results/quick/``
and writes ``docs/results/quick.md``: where and when the records were measured (the first and last record's
finish time, the commit of the code that ran, the machine, torch and the device the records name), every
table rendered from its CSV with the file named above it, and the plots. Re-run it after re-running the suite.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from .domain_gap import DEFAULT_RUN, level_of
from .methods import METHODS
from .panel import panel_sections
from .selection import format_interval

COPIED = ("report.md", "selected.csv", "paired.csv", "checkpoints.csv", "records.csv", "bn_means.csv", "bn_paired.csv",
          "panel_means.csv", "panel_paired.csv", "panel_verdict.csv", "panel_family_verdict.csv", "panel_probe.csv",
          "gap_measures.csv", "tradeoff.png", "topk.png", "mask_blocks.png", "domain_gap.png")
PLOTS = {"tradeoff.png": "Accuracy against worst-group accuracy and against EO, each method at its group_val variant",
         "topk.png": "ACC, WST and EO against k", "mask_blocks.png": "Tensors updated per block",
         "domain_gap.png": "Every method minus full fine-tuning per domain-gap level"}


def _git(*args, cwd="."):
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(results, measured_at=None):
    """What a page says about its numbers: when the records finished, the code that ran, the machine."""
    finished, devices, torches, n = [], set(), set(), 0
    for path in sorted((Path(results) / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        finished.append(record["finished"])
        devices.add(record["device"])
        torches.add(record["torch"])
        n += 1
    if not n:
        raise FileNotFoundError(f"No records under {Path(results) / 'records'}: run the suite first.")
    return {"records": n, "first": min(finished), "last": max(finished),
            "measured_at": measured_at or _git("rev-parse", "--short", "HEAD"),
            "generated_at": _git("rev-parse", "--short", "HEAD"), "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
            "device": ", ".join(sorted(devices)), "torch": ", ".join(sorted(torches))}


def _table(frame):
    return frame.to_markdown(index=False, disable_numparse=True)


def _interval(row):
    """``+x.x [lo, hi]``, with `` *`` when the interval excludes 0."""
    return format_interval(row["mean_diff"], row["ci_low"], row["ci_high"], decimals=1, mark=True)


def _label(key):
    return METHODS[key].label if key in METHODS else key


def batchnorm_sections(folder, name):
    """The batchnorm suite's tables, from ``bn_means.csv`` and ``bn_paired.csv``: one column per level."""
    means = pd.read_csv(folder / "bn_means.csv")
    paired = pd.read_csv(folder / "bn_paired.csv")
    means["cell"] = [f"{m:.1f} ± {s:.1f} ({int(c)})" for m, s, c in zip(means["WST_mean"], means["WST_std"],
                                                                         means["WST_count"])]
    means["bn_statistics"] = means["bn_statistics"].fillna("")
    wide = means.pivot_table(index=["method", "bn_statistics"], columns="level", values="cell", aggfunc="first",
                             sort=False).reset_index()
    wide["method"] = wide["method"].map(_label)
    wide.columns = [c if isinstance(c, str) else f"g = {c:g}" for c in wide.columns]
    paired["cell"] = [_interval(row) for _, row in paired.iterrows()]
    pairs = paired.pivot_table(index=["method", "setting", "versus"], columns="level", values="cell",
                               aggfunc="first", sort=False).reset_index()
    pairs.columns = [c if isinstance(c, str) else f"g = {c:g}" for c in pairs.columns]
    default = pairs[pairs["setting"] == f"{DEFAULT_RUN[1]} (default)"].drop(columns=["setting"])
    default = default.rename(columns={"method": "default", "versus": "minus"})
    rest = pairs[pairs["setting"] != f"{DEFAULT_RUN[1]} (default)"].copy()
    rest["method"] = rest["method"].map(_label)
    sections = []
    guard = guard_choices(folder)
    if guard is not None:
        sections.append(("What the guard chose", "records/*/*/seed*.json",
                         "For each guarded run (the default criterion, real statistics, the held-out guard scored on "
                         "the training-distribution validation split, or on the group-labelled one where the method "
                         "says so), the candidate it returned: the pre-trained "
                         "model, a fine-tuning epoch, or an interpolation α between the two; runs per level.",
                         _table(guard)))
    return sections + [
        ("Test worst-group accuracy per method and setting", "bn_means.csv",
         "Test WST %, mean ± std over seeds (number of seeds); the setting is `bn_statistics`, or `guard SCORE` "
         "for the default criterion with the held-out guard on, scored by SCORE on the training-distribution "
         "validation split (no group labels; on the group-labelled split where the method says so); every run, "
         "none selected.", _table(wide)),
        ("The package default against every other run", "bn_paired.csv",
         f"The default ({_label(DEFAULT_RUN[0])} with `bn_statistics=\"{DEFAULT_RUN[1]}\"`, unguarded) minus "
         "each other run, paired by seed: mean WST difference [95 % Student t interval]; * the interval excludes 0.",
         _table(default)),
        ("Each setting against another, and against ERM", "bn_paired.csv",
         "Per method, paired by seed: mean WST difference [95 % Student t interval]; * the interval excludes 0.",
         _table(rest[rest["setting"] != rest["versus"]])),
    ]


def _candidate_kind(chosen, candidates):
    """The kind of candidate the guard returned: the pre-trained model, the last or an earlier epoch, or an α."""
    if chosen["candidate"] == "pretrained":
        return "pre-trained"
    if chosen["alpha"] != 1.0:
        return f"α = {chosen['alpha']:g}"
    return "last epoch" if chosen["epoch"] == max(c["epoch"] for c in candidates) else "earlier epoch"


def guard_choices(folder):
    """Per (selection score, level): how often each kind of candidate was returned, from the records' ``guard``."""
    rows = []
    for path in sorted((Path(folder) / "records").rglob("*.json")):
        record = json.loads(path.read_text())
        if "guard" in record:
            rows.append({"score": record["settings"]["params"].get("selection_score"),
                         "level": f"g = {level_of(record['settings']['task']):g}",
                         "kind": _candidate_kind(record["guard"]["selected"], record["guard"]["candidates"])})
    if not rows:
        return None
    table = pd.DataFrame(rows).groupby(["score", "level"])["kind"].value_counts().unstack(fill_value=0)
    return table.reset_index().astype(str)


def suite_sections(folder, name):
    """The selected variants and the paired differences to the references (ERM, full fine-tuning), each rule."""
    selected = pd.read_csv(folder / "selected.csv")
    selected["variant"] = selected["variant"].fillna("")  # a method that ran in one setting has no variant
    for metric in ("ACC", "WST", "EO"):
        selected[metric] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(selected[f"{metric}_mean"], selected[f"{metric}_std"])]
    label = "method_name" if "method_name" in selected else "method"
    tasks = ["task"] if selected["task"].nunique() > 1 else []  # a suite of several tasks shows which
    sections = []
    paired = pd.read_csv(folder / "paired.csv")
    paired = paired[paired["metric"] == "WST"].copy()
    paired["WST difference"] = [_interval(row) for _, row in paired.iterrows()]
    for rule in ("group_val", "label_free"):
        part = selected[selected["rule"] == rule]
        sections.append((f"Each method at its selected variant (rule `{rule}`)", "selected.csv",
                         "Test %, mean ± std over seeds.",
                         _table(part[[*tasks, label, "variant", "n_seeds", "ACC", "WST", "EO"]])))
        pairs = paired[paired["rule"] == rule]
        if pairs.empty:  # a suite without its references (e.g. one method over several providers)
            continue
        references = " and ".join(dict.fromkeys(pairs["reference"]))
        sections.append((f"Paired by seed against {references} (rule `{rule}`)", "paired.csv",
                         "Method minus reference, test WST: mean [95 % Student t interval]; * the interval "
                         "excludes 0.", _table(pairs[[*tasks, "method", "reference", "WST difference", "n_seeds"]])))
    return sections + checkpoint_sections(folder, tasks)


def checkpoint_sections(folder, tasks=()):
    """What choosing the epoch changed (``checkpoints.csv``, suites run with checkpoint selection)."""
    path = folder / "checkpoints.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    table = table[table["n_with_epochs"] > 0].copy()
    if table.empty:
        return []
    table["method"] = table["method"].map(_label)
    table["variant"] = table["variant"].fillna("")
    table["epoch (of)"] = [f"{e:.1f} ({n:.0f})" for e, n in zip(table["epoch_mean"], table["n_epochs"])]
    table["stops early"] = [f"{x:.0%}" for x in table["earlier_share"]]
    table["WST last → checkpoint"] = [f"{a:.1f} → {b:.1f}" for a, b in zip(table["WST_last"], table["WST_checkpoint"])]
    table["difference"] = [_interval(row) for _, row in table.iterrows()]
    return [("Checkpoint selection: the rule's epoch against the last epoch", "checkpoints.csv",
             "Each rule keeps, per run, the epoch with its best validation score (the tables above are those "
             "checkpoints). Per method at the variant the rule selected: mean chosen epoch (of how many), share of "
             "runs stopping before the last epoch, test WST of the last epoch and of the checkpoint, and the paired "
             "difference: mean [95 % Student t interval]; * the interval excludes 0." + checkpoint_cost(folder),
             _table(table[[*tasks, "rule", "method", "variant", "epoch (of)", "stops early", "WST last → checkpoint",
                           "difference", "n_seeds"]]))]


def checkpoint_cost(folder):
    """A sentence on what scoring the epochs cost, from ``records.csv`` (each run's time and its scoring time,
    measured in the run itself); empty without those columns."""
    path = folder / "records.csv"
    records = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if "checkpoint_s" not in records or "wall_s" not in records:
        return ""
    scoring, total = records["checkpoint_s"].sum(), records["wall_s"].sum()
    return (f" Scoring the epochs took {scoring:.0f} s of the {total:.0f} s the {len(records)} runs took in all "
            f"(`records.csv`, `checkpoint_s` and `wall_s`, summed over runs): {scoring / (total - scoring):.1%} on top "
            "of the runs without it.")


def sections_of(results):
    """The page's sections: the panel's or the batchnorm suite's tables where the output has them (a run, whole or
    a subset of its methods and tasks), the suite tables otherwise."""
    if (Path(results) / "panel_means.csv").is_file():
        return panel_sections
    return batchnorm_sections if (Path(results) / "bn_means.csv").is_file() else suite_sections


def write_page(results, docs, name, title, *, measured_at=None, intro="", family=None, files_from=None):
    """Copy ``results``' outputs to ``docs/name/`` and write ``docs/name.md``; returns the page's path.
    ``family``: a page for one family of the defaults panel (its tasks only); ``files_from``: link the files of
    the page of that name (the panel's summary) instead of copying them again."""
    results, docs = Path(results), Path(docs)
    facts = provenance(results, measured_at)
    folder = files_from or name
    target = docs / folder
    target.mkdir(parents=True, exist_ok=True)
    copied = [f for f in COPIED if (results / f).is_file()]
    for f in copied:
        shutil.copy2(results / f, target / f)
    lines = [f"# {title}", "", intro, "",
             "```{admonition} Where these numbers come from", ":class: note", "",
             f"Generated by `python -m aimfair_bench.pages` from `{results}` ({facts['records']} records, finished "
             f"between {facts['first']} and {facts['last']}), measured with the code of commit "
             f"`{facts['measured_at']}` on {facts['machine']} (device {facts['device']}, torch {facts['torch']}); "
             f"page generated at commit `{facts['generated_at']}`. The files, copied next to "
             f"{'this page' if folder == name else f'the page {folder}.md'}: "
             + ", ".join(f"[`{f}`]({folder}/{f})" for f in copied) + ".", "```", ""]
    sections = sections_of(results)
    if family is not None and sections is not panel_sections:
        raise ValueError(f"--family is for the defaults panel's output; {results} has no panel_means.csv.")
    for heading, source, note, table in (sections(results, name, family) if family else sections(results, name)):
        lines += [f"## {heading}", "", f"From `{source}`. {note}", "", table, ""]
    for plot, caption in PLOTS.items():
        if plot in copied:
            lines += [f"```{{figure}} {folder}/{plot}", f":alt: {caption}", "", f"{caption} (`{plot}`).", "```", ""]
    if "report.md" in copied and family is None:
        lines += ["## The full report", "", "From `report.md`, as the benchmark wrote it.", "",
                  f"```{{include}} {folder}/report.md", ":heading-offset: 2", "```", ""]
    page = docs / f"{name}.md"
    page.write_text("\n".join(lines))
    return page


def paper_table_files(out, docs, name, files, *, generated_by, measured_at, detail):
    """For the paper-table commands' pages: copy ``files`` of ``out`` to ``docs/name/`` (``{target: source}``; a
    source ``.md`` is copied under a target name Sphinx does not read as a document) and return the page's "where
    these numbers come from" lines (``detail``: what the run was, and where the paper's numbers come from)."""
    out, target = Path(out), Path(docs) / name
    target.mkdir(parents=True, exist_ok=True)
    for to, source in files.items():
        shutil.copy2(out / source, target / to)
    return ["```{admonition} Where these numbers come from", ":class: note", "",
            f"Generated by `{generated_by}` from `{out}` ({detail}), measured with the code of commit `{measured_at}` "
            f"on {_cpu_model()}; page generated at commit `{_git('rev-parse', '--short', 'HEAD')}`. Files: "
            + ", ".join(f"[`{f}`]({name}/{f})" for f in files) + ".", "```", ""]


def write_tuned_page(tuned_path, docs, name="tuned"):
    """The tune suite's choices, from the committed ``tuned.json`` (its records are not kept in the repository)."""
    tuned_path, docs = Path(tuned_path), Path(docs)
    settings = json.loads(tuned_path.read_text())
    rows = [{"method": key, "setting": entry["variant"], "grid size": entry.get("grid_size", ""),
             "mean val_group_WST": f"{entry['val_group_WST']:.1f}" if "val_group_WST" in entry else ""}
            for key, entry in settings["methods"].items()]
    (docs / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(tuned_path, docs / name / tuned_path.name)
    lines = ["# Tuned settings", "",
             "```{admonition} Where these numbers come from", ":class: note", "",
             f"Generated by `python -m aimfair_bench.pages --tuned` from [`{tuned_path.name}`]({name}/{tuned_path.name}), "
             "the file `aimfair-bench tune` wrote and the quick, baselines and domain-gap suites read "
             f"(`benchmarks/tuned.json`); page generated at commit `{_git('rev-parse', '--short', 'HEAD')}`. "
             f"{settings['source']}; seeds {', '.join(map(str, settings.get('seeds', [])))}. The tune suite's "
             "records are not kept in the repository: `aimfair-bench tune` re-measures them.", "```", "",
             "## Each method's setting", "", "From `tuned.json`: the setting each method runs at in the quick suite "
             "and the mean validation score it was chosen on.", "", _table(pd.DataFrame(rows)), ""]
    page = docs / f"{name}.md"
    page.write_text("\n".join(lines))
    return page


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", help="the suite's output folder (e.g. results/quick)")
    parser.add_argument("--name", help="page name (quick, batchnorm, ...)")
    parser.add_argument("--tuned", help="write the tuned-settings page from this tuned.json instead")
    parser.add_argument("--title", help="page title (default: the suite's name)")
    parser.add_argument("--intro", default="", help="a paragraph under the title (what the suite runs)")
    parser.add_argument("--docs", default="docs/results", help="where the page goes (default docs/results)")
    parser.add_argument("--measured-at", help="commit of the code that ran (default: HEAD)")
    parser.add_argument("--family", help="the defaults panel: a page for this family's tasks only")
    parser.add_argument("--files-from", help="link the files of this page (e.g. panel) instead of copying them")
    args = parser.parse_args(argv)
    if args.tuned:
        print(write_tuned_page(args.tuned, args.docs))
        return
    if not (args.results and args.name):
        parser.error("give the results folder and --name (or --tuned FILE)")
    print(write_page(args.results, args.docs, args.name, args.title or args.name, measured_at=args.measured_at,
                     intro=args.intro, family=args.family, files_from=args.files_from))


if __name__ == "__main__":
    main()
