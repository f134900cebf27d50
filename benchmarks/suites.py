"""The benchmark suites: which tasks, methods, variants, seeds and training recipes each one runs.

A suite is data, not code: :func:`build_suite` returns a :class:`Suite` whose fields the command line
can override (``--seeds``, ``--n-train``, ``--finetune-lrs`` ...). Every field that changes a result
ends up in the settings of each record, so a re-run with other settings never reuses a record.
"""

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from .methods import METHODS

# The embedded benchmark's ERM recipe: narrow ResNet-18, 15 epochs, lr x0.1 at epoch 10 (lists: records are JSON).
EMBEDDED_RECIPE = dict(width=16, max_epochs=15, lr=0.05, batch_size=64, lr_milestones=[10], lr_gamma=0.1,
                       augment=False)
# The paper's Sec. 4.3: ResNet-18, batch 128, 15 epochs, lr 0.01 x0.01 at epoch 10, 224 px.
PAPER_RECIPE = dict(arch="resnet18", width=64, max_epochs=15, lr=0.01, batch_size=128, lr_milestones=[10],
                    lr_gamma=0.01, image_size=224, augment=True)
# Fine-tuning on the embedded data: the paper's 10 epochs and k = 55. The learning rate comes from a
# search on the quick suite (--finetune-lrs 0.001 0.003 0.01 0.03, 3 seeds): 0.001 was best for full,
# cosine and AIM-Fair fine-tuning alike (AIM-Fair WST 81.7 / 77.8 / 67.8 / 64.8). S1 carries the real
# data's bias (minority share 0.04 -> 96/4); 0.9 instead changed AIM-Fair by < 1 point. ``bn_statistics`` is
# the mitigator's default, named so that records measured under the old default ("finetune") are not reused.
EMBEDDED_FINETUNE = dict(top_k=55, finetune_epochs=10, finetune_lr=0.001, finetune_batch_size=64,
                         bias_ratio=0.96, synthetic_ratio=1.0, bn_statistics="real")
PAPER_FINETUNE = dict(top_k=55, finetune_epochs=10, finetune_lr=0.5, finetune_batch_size=128,
                      bias_ratio=0.9, synthetic_ratio=1.0, bn_statistics="real")
# The paper's Tables 1, 3 and 4, plus the package's default criterion (normalized gaps).
PAPER_METHODS = ("erm", "cvar_dro", "lff", "jtt", "fairif", "synthetic_only", "supplementation", "linear_probe",
                 "full", "random", "update_block", "freeze_block", "cosine", "normalized", "aimfair")
BLOCKS = ("layer1", "layer2", "layer3", "layer4")


@dataclass
class Suite:
    """Tasks x methods (x variants x fine-tuning learning rates) x seeds, with one training recipe."""

    name: str
    description: str
    tasks: list
    methods: tuple
    seeds: tuple
    recipe: dict
    finetune: dict
    variants: dict = field(default_factory=dict)  # method -> list of parameter dicts
    finetune_lrs: tuple = ()  # empty: the single finetune["finetune_lr"]
    tuned: dict = field(default_factory=dict)  # method -> parameters chosen by the tune suite (under variants)
    tuned_from: str = ""  # where ``tuned`` came from (recorded in every tuned run's settings)
    checkpoints: bool = True  # score every epoch for the selection rules (False: each run as the method returns it)


def embedded_task(n_train=2000):
    return {"name": "coloured MNIST", "dataset": "coloured_mnist", "n_train": n_train, "n_val_train": 500,
            "n_test": 1000, "n_val_per_cell": 50, "minority_share": 0.04, "image_size": 32,
            "provider": {"kind": "rendered_digits", "n_prompts": 50, "head_poses": True}}


# The variants the paper's Tables 3 and 4 need ("Best Random Selection", "Best Sub-Tuning ...").
PAPER_VARIANTS = {"random": [{"top_k": 0.55}, {"top_k": 0.85}],
                  "update_block": [{"block": b} for b in BLOCKS],
                  "freeze_block": [{"block": b} for b in BLOCKS]}
TUNED_PATH = Path(__file__).with_name("tuned.json")


def load_tuned(path=TUNED_PATH):
    """``(method -> parameters, source)`` chosen by ``aimfair-bench tune`` (see :func:`tune`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No tuned settings at {path}; run `aimfair-bench tune` (it writes OUT/tuned.json).")
    settings = json.loads(path.read_text())
    return {m: entry["params"] for m, entry in settings["methods"].items()}, settings["source"]


def quick(tuned_path=TUNED_PATH):
    """Every method at the setting the tune suite chose by the ``group_val`` rule, plus the paper's variants.

    For methods with paper variants (random ratios, blocks) only the tuned fine-tuning learning rate is kept;
    the variants themselves are chosen on validation data in the report, under both rules.
    """
    tuned, source = load_tuned(tuned_path)
    tuned = {m: {k: v for k, v in params.items()
                 if not any(k in variant for variant in PAPER_VARIANTS.get(m, []))}
             for m, params in tuned.items() if m in PAPER_METHODS}
    return Suite(
        "quick",
        "Embedded coloured MNIST (2,000 biased training images, minority share 0.04, 32 px), rendered-digit "
        "synthetic data from 50 contextual prompts per cell, narrow ResNet-18 (width 16), every method at its "
        "tuned setting (aimfair-bench tune, group_val rule), 3 seeds.",
        [embedded_task()], PAPER_METHODS, (0, 1, 2), dict(EMBEDDED_RECIPE), dict(EMBEDDED_FINETUNE),
        variants=copy.deepcopy(PAPER_VARIANTS), tuned=tuned, tuned_from=source)


# The tune suite's grids (user guide "The benchmark", "Tuning"). Networks train from scratch here, so the backbone learning
# rates reach above SubpopBench's 1e-4..1e-2 range for ImageNet-pretrained models: 0.05 is the embedded ERM
# recipe's. Method parameters follow SubpopBench's registry (CVaR alpha 0.01..1 with default 0.1, JTT
# lambda 1..316, LfF q 0.05..0.95 with default 0.7) and the methods' papers (LfF's Adam at 1e-3, JTT's
# identification after one or a few epochs).
BACKBONE_LRS = (0.01, 0.05)
FINETUNE_LRS = (0.0003, 0.001, 0.003)
TUNE_GRIDS = {
    "erm": [{"lr": lr} for lr in BACKBONE_LRS],
    "cvar_dro": [{"alpha": a, "lr": lr} for a in (0.1, 0.3, 0.5) for lr in (0.005, *BACKBONE_LRS)],
    "lff": [{"gce_q": q, **opt} for q in (0.3, 0.7)
            for opt in ({"lr": 0.01}, {"lr": 0.05}, {"optimizer": "adam", "lr": 0.001})],
    "jtt": ([{"identification_epochs": t, "upweight": u} for t in (1, 2, 5) for u in (5, 20, 50)]
            + [{"identification_epochs": 2, "upweight": 20, "lr": 0.01}]),
    "fairif": [{"lissa_damping": d, "max_weight": c, "stage_two_lr": lr}
               for d in (0.01, 0.1) for c in (None, 5.0) for lr in (0.005, 0.05)],
    "synthetic_only": [{"lr": lr} for lr in BACKBONE_LRS],
    "supplementation": [{"lr": lr} for lr in BACKBONE_LRS],
}


def tune():
    """Every method of the quick suite over its grid (``TUNE_GRIDS``; each fine-tuning method over
    ``FINETUNE_LRS`` x its paper variants), 3 seeds; writes ``OUT/tuned.json`` from the ``group_val`` choices."""
    finetuning = [m for m in PAPER_METHODS if METHODS[m].finetunes]
    variants = dict(TUNE_GRIDS)
    for m in finetuning:
        variants[m] = [{**v, "finetune_lr": lr} for v in PAPER_VARIANTS.get(m, [{}]) for lr in FINETUNE_LRS]
    return Suite(
        "tune", "Hyperparameter search on the embedded task (the quick suite's data, recipe and seeds): every "
        "method over a small published-range grid, selection on validation data only.",
        [embedded_task()], PAPER_METHODS, (0, 1, 2), dict(EMBEDDED_RECIPE), dict(EMBEDDED_FINETUNE),
        variants=variants)


def topk():
    return Suite(
        "topk", "The paper's Fig. 5 on the embedded data: AIM-Fair with k in {40, 45, 50, 55, 60} of 62 tensors, "
        "next to ERM and full fine-tuning, 3 seeds.",
        [embedded_task()], ("erm", "full", "aimfair"), (0, 1, 2), dict(EMBEDDED_RECIPE), dict(EMBEDDED_FINETUNE),
        variants={"aimfair": [{"top_k": k} for k in (40, 45, 50, 55, 60)]})


def fashion():
    task = {"name": "coloured Fashion-MNIST", "dataset": "coloured_fashion", "path": None, "n_train": 30000,
            "n_val_train": 3000, "n_test": 4000, "n_val_per_cell": 100, "minority_share": 0.04, "image_size": 32,
            "provider": {"kind": "heldout", "max_images": 30000}}
    return Suite(
        "fashion", "Scale run: coloured Fashion-MNIST (30,000 biased training images from the official training "
        "split, 4,000 balanced test images), synthetic stand-in = the unused training images, transformed.",
        [task], ("erm", "jtt", "linear_probe", "full", "random", "cosine", "aimfair"), (0, 1, 2),
        dict(EMBEDDED_RECIPE, batch_size=128), dict(EMBEDDED_FINETUNE, finetune_batch_size=128),
        variants={"random": [{"top_k": 0.77}]})


def paper():
    provider = {"kind": "diffusers", "pipeline": "stabilityai/stable-diffusion-2-1", "cache_dir": "synthetic",
                "n_prompts": 50, "num_inference_steps": 50, "guidance_scale": 9.0, "batch_size": 8,
                "generation_size": None, "seed": 0}
    celeba = [{"name": f"CelebA T={t} P={p}", "dataset": "celeba", "root": None, "target": t, "protected": p,
               "n_train": 20000, "n_val_train": 2000, "n_test": None, "n_val_per_cell": 100, "minority_share": 0.1,
               "image_size": 224,
               "provider": dict(provider)}
              for t, p in (("Smiling", "Male"), ("Smiling", "Young"), ("Young", "Male"))]
    utkface = {"name": "UTKFace T=Female P=White", "dataset": "utkface", "root": None, "n_train": 10000,
               "n_val_train": 1000, "n_test": 3200, "n_val_per_cell": 100, "minority_share": 0.1, "image_size": 224,
               "provider": dict(provider)}
    return Suite(
        "paper", "The paper's settings (Sec. 4.3): ResNet-18, 224 px, 15 + 10 epochs, k = 55, 10 seeds, CelebA "
        "(Smiling/Male, Smiling/Young, Young/Male; 20,000 biased training images, whole test split) and UTKFace "
        "(Female/White; 10,000 biased, 3,200 balanced test), synthetic images from a diffusers model.",
        [*celeba, utkface], PAPER_METHODS, tuple(range(10)), dict(PAPER_RECIPE), dict(PAPER_FINETUNE),
        variants={"random": [{"top_k": r} for r in (0.4, 0.55, 0.7, 0.85)],
                  "update_block": [{"block": b} for b in ("stem", *BLOCKS)],
                  "freeze_block": [{"block": b} for b in ("stem", *BLOCKS, "fc")]},
        finetune_lrs=(0.4, 0.5, 0.6))


def criteria():
    """Issue 8's evidence: every selection criterion against same-size random masks, two bias strengths."""
    tasks = [dict(embedded_task(), name=f"coloured MNIST, minority {m}", minority_share=m) for m in (0.04, 0.02)]
    selective = ("aimfair", "cosine", "normalized")
    variants = {m: [{"top_k": k} for k in (40, 55)] for m in selective}
    variants["aimfair"].append({"top_k": 55, "freeze_bn_stats": False})
    # the gap-ratio rule at the sizes the intersection has at k = 40 and 55 (2k - n = 18 and 48)
    variants["ratio"] = [{"top_k": 18}, {"top_k": 48}]
    variants["random_matched"] = ([{"match": m, "match_top_k": k} for m in selective for k in (40, 55)]
                                  + [{"match": "ratio", "match_top_k": k} for k in (18, 48)])
    return Suite(
        "criteria", "Selection criteria vs same-size random masks: coloured MNIST at minority shares 0.04 and 0.02, "
        "abs_diff / cosine / normalized gaps with the paper's intersection at k = 40 and 55, the gap-ratio rule at "
        "the same sizes, one random mask of the same size per run, BatchNorm statistics frozen or not, the "
        "fine-tuning learning rate searched over {0.001, 0.003}, 3 seeds.",
        tasks, ("erm", "full", *selective, "ratio", "random_matched"), (0, 1, 2), dict(EMBEDDED_RECIPE),
        dict(EMBEDDED_FINETUNE), variants=variants, finetune_lrs=(0.001, 0.003))


BASELINES = ("erm", "cvar_dro", "lff", "jtt", "fairif", "group_dro")


def baselines(tuned_path=TUNED_PATH):
    """The label-free baselines at their tuned settings next to the Group DRO oracle, on the embedded task."""
    tuned, source = load_tuned(tuned_path)
    return Suite(
        "baselines", "Baselines on one backbone (the quick suite's data and recipe): ERM, CVaR DRO, LfF, JTT and "
        "FairIF at their tuned settings, and Group DRO, the oracle that reads the training group labels (step "
        "size 0.01 or 0.1, chosen on validation data), 3 seeds.",
        [embedded_task()], BASELINES, (0, 1, 2), dict(EMBEDDED_RECIPE), dict(EMBEDDED_FINETUNE),
        variants={"group_dro": [{"step_size": 0.01}, {"step_size": 0.1}]},
        tuned={m: p for m, p in tuned.items() if m in BASELINES}, tuned_from=source)


# Logistic regression on Adult, the FairIF paper's tabular setting (no weight decay, lr x0.1 at epoch 7).
ADULT_RECIPE = dict(arch="logistic", max_epochs=10, lr=0.05, batch_size=256, lr_milestones=[7], lr_gamma=0.1,
                    weight_decay=0.0)


# Small grids for the tabular task, in the ranges of TUNE_GRIDS; each method's variant is chosen per rule.
ADULT_GRIDS = {
    "cvar_dro": [{"alpha": a} for a in (0.1, 0.3, 0.5)],
    "lff": [{"gce_q": q, "lr": lr} for q in (0.3, 0.7) for lr in (0.005, 0.05)],
    "jtt": [{"identification_epochs": 1, "upweight": u} for u in (2, 5, 20)],
    "fairif": [{"lissa_damping": d} for d in (0.01, 0.1)],
    "group_dro": [{"step_size": s} for s in (0.01, 0.1)],
}


def adult():
    task = {"name": "Adult (protected: sex)", "dataset": "adult", "n_train": None, "n_val_train": 3000,
            "n_test": None, "n_val_per_cell": 100, "provider": None}
    return Suite(
        "adult", "FairIF's tabular setting: UCI Adult with sex protected, logistic regression (same skorch loop), "
        "every label-free baseline and the Group DRO oracle over a small grid each (ADULT_GRIDS; the image "
        "defaults collapse on tabular data), chosen on validation data, 3 seeds; the group-labelled validation "
        "set (100 rows per cell) comes out of the official test split.",
        [task], BASELINES, (0, 1, 2), dict(ADULT_RECIPE), {}, variants=copy.deepcopy(ADULT_GRIDS))


def prompts():
    """The paper's Table 5: train only on balanced synthetic data made from four kinds of prompts."""
    settings = [("plain prompt (1 per cell)", {"prompts": "plain"}),
                ("contextual prompts (25)", {"n_prompts": 25, "head_poses": False}),
                ("contextual prompts (50)", {"n_prompts": 50, "head_poses": False}),
                ("contextual prompts + poses (50)", {"n_prompts": 50, "head_poses": True})]
    base = embedded_task()
    tasks = [dict(base, name=f"coloured MNIST, {label}", provider={"kind": "rendered_digits", **provider})
             for label, provider in settings]
    tuned, source = load_tuned()
    return Suite(
        "prompts", "The paper's Table 5 on the embedded data: a narrow ResNet-18 trained only on 2,000 balanced "
        "rendered digits made from one plain prompt per cell, 25 or 50 contextual prompts per cell, or 50 with "
        "poses (angle and position), tested on real coloured MNIST; tasks differ only in their provider; 3 seeds.",
        tasks, ("synthetic_only",), (0, 1, 2), dict(EMBEDDED_RECIPE), dict(EMBEDDED_FINETUNE),
        tuned={"synthetic_only": tuned["synthetic_only"]}, tuned_from=source)


# The domain-gap suite: rendered digits pushed away from the real ones (RenderedDigitsProvider(style_shift=g)).
GAP_LEVELS = (0.0, 0.5, 1.0, 1.5)
DOMAIN_GAP_METHODS = ("erm", "jtt", "afr", "synthetic_only", "linear_probe", "full", "aimfair", "normalized",
                      "ratio", "random_matched", "auto_rgn")
AFR_GRID = [{"gamma": g, "reg_lambda": r} for g in (1.0, 4.0, 10.0) for r in (0.0, 0.1)]
DOMAIN_GAP_LRS = (0.0003, 0.001)


def domain_gap(tuned_path=TUNED_PATH, levels=GAP_LEVELS):
    """Does choosing which tensors to tune matter when the synthetic images are far from the real ones?

    One task per style-shift level (the tasks differ only in their provider), the quick suite's data, ERM
    recipe and tuned baselines; every fine-tuning method with its rate searched over ``DOMAIN_GAP_LRS`` (the
    tune suite's 0.001, and 0.0003 in case a large gap needs a gentler step) and AFR over ``AFR_GRID``, each
    chosen on validation data by the selection rules; the gap-ratio rule at 48 tensors (the smallest
    intersection at k = 55) and a random mask of AIM-Fair's size; 5 seeds.
    """
    tuned, source = load_tuned(tuned_path)
    base = embedded_task()
    tasks = [dict(base, name=f"coloured MNIST, style shift {g}", provider={**base["provider"], "style_shift": g})
             for g in levels]
    finetuning = [m for m in DOMAIN_GAP_METHODS if METHODS[m].finetunes]
    tuned = {m: {k: v for k, v in params.items() if k != "finetune_lr"}
             for m, params in tuned.items() if m in DOMAIN_GAP_METHODS and m not in finetuning}
    return Suite(
        "domain-gap", "The domain-gap study: coloured MNIST with rendered-digit synthetic data pushed away from the "
        f"real digits' style (stripes, lightening, blur) at levels {', '.join(map(str, levels))}; ERM, JTT and "
        "synthetic-only at their tuned settings, AFR over a grid, linear probe, full fine-tuning, AIM-Fair "
        "(abs_diff), the normalized criterion, the gap-ratio rule, a random mask of AIM-Fair's size and Auto-RGN, "
        "their fine-tuning rate searched over {0.0003, 0.001} and AFR's setting over a grid, chosen on validation "
        "data; 5 seeds.",
        tasks, DOMAIN_GAP_METHODS, (0, 1, 2, 3, 4), dict(EMBEDDED_RECIPE), dict(EMBEDDED_FINETUNE),
        variants={"random_matched": [{"match": "aimfair"}], "ratio": [{"top_k": 48}], "afr": copy.deepcopy(AFR_GRID)},
        tuned=tuned, tuned_from=source, finetune_lrs=DOMAIN_GAP_LRS)


BN_SETTINGS = ("finetune", "real", "eval")
BATCHNORM_METHODS = ("erm", "jtt", "synthetic_only", "linear_probe", "full", "aimfair", "normalized",
                     "random_matched", "auto_rgn", "normalized_guarded")
# The mitigator's held-out guard, each label-free score, on the default criterion with real statistics.
GUARD_SCORES = ("accuracy", "worst_class_accuracy", "pseudo_group", "synthetic_worst_group", "probe_worst_group",
                "probe_mean_group")


def batchnorm(tuned_path=TUNED_PATH, levels=GAP_LEVELS):
    """Are BatchNorm statistics what breaks fine-tuning across a domain gap?

    The domain-gap suite's tasks and seeds; every fine-tuning strategy at the domain-gap study's rate 0.001
    under each ``bn_statistics`` setting of the mitigator: as fine-tuning leaves them ("finetune", the
    behaviour the domain-gap study measured), re-estimated on the real training images after fine-tuning
    ("real"), or every layer kept at the pre-trained statistics during fine-tuning ("eval"); and the model
    trained on synthetic data only, with and without the re-estimation on real images; JTT (tuned) as the
    label-free baseline to beat; and the default criterion with real statistics and the held-out guard on (the
    task's training-distribution validation split, no group labels) under each label-free ``GUARD_SCORES``.
    5 seeds.
    """
    suite = domain_gap(tuned_path, levels)
    finetuning = [m for m in BATCHNORM_METHODS if METHODS[m].finetunes and m != "normalized_guarded"]
    variants = {m: [{"bn_statistics": b} for b in BN_SETTINGS] for m in finetuning}
    variants["random_matched"] = [{"match": "aimfair", "bn_statistics": b} for b in BN_SETTINGS]
    variants["synthetic_only"] = [{"bn_statistics": b} for b in ("finetune", "real")]
    variants["normalized"] += [{"bn_statistics": "real", "validate_on": "val_train", "selection_score": score}
                               for score in GUARD_SCORES]
    # the candidates also over BatchNorm handling (as fine-tuned and re-estimated), chosen by the probe score
    variants["normalized"] += [{"bn_statistics": "real", "validate_on": "val_train", "selection_score": score,
                                "batchnorm_variants": True} for score in ("probe_worst_group", "probe_mean_group")]
    # the guard with group labels: worst_group on the balanced validation split (its 200 images, 50 per cell)
    variants["normalized_guarded"] = [{"bn_statistics": "real"}, {"bn_statistics": "real", "batchnorm_variants": True}]
    return Suite(
        "batchnorm", "BatchNorm statistics across the domain gap: the domain-gap suite's tasks (style shift "
        f"{', '.join(map(str, levels))}) and 5 seeds; linear probe, full fine-tuning, AIM-Fair (abs_diff), the "
        "normalized criterion, a random mask of AIM-Fair's size and Auto-RGN at fine-tuning rate 0.001, each with "
        "the BatchNorm statistics as fine-tuning leaves them, re-estimated on the real training images, or kept "
        "at the pre-trained ones; synthetic-only with and without the re-estimation; JTT; the normalized "
        "criterion with the held-out guard under each label-free score.",
        suite.tasks, BATCHNORM_METHODS, suite.seeds, suite.recipe,
        {**{k: v for k, v in suite.finetune.items() if k != "bn_statistics"}, "finetune_lr": 0.001},  # in variants
        variants=variants, tuned={m: p for m, p in suite.tuned.items() if m in BATCHNORM_METHODS},
        tuned_from=suite.tuned_from)


# Your own data (aimfair-bench custom): the label-free baselines, the oracle, and the fine-tuning family with
# a random mask of AIM-Fair's size next to AIM-Fair, and the default criterion guarded by worst_group on the
# group-labelled validation split (custom data always has its group labels).
CUSTOM_METHODS = ("erm", "cvar_dro", "jtt", "fairif", "group_dro", "linear_probe", "full", "random_matched",
                  "aimfair", "normalized", "normalized_guarded")


# What aimfair-bench custom searches on the user's validation data instead of taking the paper's CelebA values
# (ERM lr 0.01, fine-tuning lr 0.5): the ERM recipe's rate (chosen first, the model fine-tuning starts from) and the
# fine-tuning rate (a variant of every fine-tuning method, chosen per selection rule).
CUSTOM_ERM_LRS = (0.001, 0.01, 0.1)
CUSTOM_FINETUNE_LRS = (0.001, 0.01, 0.1, 0.5)


def custom(task=None):
    """A suite on the user's own images: ``task`` comes from :func:`benchmarks.custom.metadata_task`.

    The paper's recipe (ResNet-18, 224 px, 15 + 10 epochs, k = 55) except its learning rates, which are searched
    on validation data (``CUSTOM_ERM_LRS`` for the recipe, chosen before fine-tuning by the command;
    ``CUSTOM_FINETUNE_LRS`` for fine-tuning, a variant per rate); without a synthetic-data provider only the
    methods that need none run. 3 seeds; the split is the task's and the same for every seed.
    """
    if task is None:
        raise ValueError("The custom suite is built from your files: aimfair-bench custom --metadata FILE.csv "
                         "[--synthetic-dir DIR | --pipeline MODEL ...].")
    methods = CUSTOM_METHODS
    if task.get("provider") is None:
        methods = tuple(m for m in CUSTOM_METHODS if not METHODS[m].uses_synthetic)
    return Suite(
        "custom", f"Your own images ({task['metadata']}, {task['n_train']} training images): label-free baselines, "
        "the Group DRO oracle and" + (" fine-tuning on synthetic data" if task.get("provider") else " no synthetic "
        "data") + ", the paper's recipe with its learning rates searched on validation data, 3 seeds.",
        [task], methods, (0, 1, 2), dict(PAPER_RECIPE, image_size=task["image_size"]), dict(PAPER_FINETUNE),
        variants={"random_matched": [{"match": "aimfair"}]}, finetune_lrs=CUSTOM_FINETUNE_LRS)


def vit():
    """The paper's Table 8 layout with a Vision Transformer instead of the ResNet: the embedded task and fine-tuning
    settings, the package's small plain-torch ViT (``arch="vit"``: 4 blocks, 4 heads, embedding 64, 8 px patches
    of the 32 px images, LayerNorm and no BatchNorm), trained by the embedded recipe's schedule with Adam at lr
    0.001 (SGD at 0.01, tried first, left every seed's ViT predicting one class: transformers trained from scratch
    want Adam; not tuned further); fine-tuning with the same optimiser at the embedded rate; k as the default
    fraction of the network's tensors (0.887, the paper's 55 of ResNet-18's 62). 3 seeds."""
    return Suite(
        "vit", "The paper's Table 8 on the embedded data: a small Vision Transformer (plain torch, 4 blocks, "
        "embedding 64, 8 px patches) in place of the ResNet; ERM, linear probing, full fine-tuning, a random mask "
        "of AIM-Fair's size, AIM-Fair (abs_diff) and the normalized criterion; 3 seeds.",
        [embedded_task()], ("erm", "linear_probe", "full", "random_matched", "aimfair", "normalized"), (0, 1, 2),
        dict(EMBEDDED_RECIPE, arch="vit", lr=0.001, optimizer="adam"), dict(EMBEDDED_FINETUNE, top_k=0.887),
        variants={"random_matched": [{"match": "aimfair"}]})


# The defaults panel (aimfair-bench panel): four data families, each with a synthetic provider of another kind of gap.
PANEL_SIZES = dict(n_train=1000, n_val_train=300, n_test=1000, n_val_per_cell=50, minority_share=0.04, image_size=32)
PANEL_FAMILIES = (
    ("rendered digits, style gap", [
        dict(dataset="coloured_mnist", name=f"digits, rendered, style shift {g}",
             provider={"kind": "rendered_digits", "n_prompts": 50, "head_poses": True, "style_shift": g})
        for g in GAP_LEVELS]),
    ("handwritten digits, stroke gap", [
        dict(dataset="coloured_mnist", name="digits, held-out handwritten, stroke gap",
             provider={"kind": "heldout", "gap": "stroke"})]),
    ("Fashion-MNIST, stroke gap", [
        dict(dataset="coloured_fashion", path=None, name="Fashion-MNIST, stroke gap",
             provider={"kind": "heldout", "gap": "stroke", "max_images": 10000})]),
    ("Fashion-MNIST, resolution gap", [
        dict(dataset="coloured_fashion", path=None, name="Fashion-MNIST, resolution gap",
             provider={"kind": "heldout", "gap": "resolution", "low_size": 10, "max_images": 10000})]),
)
# What every panel run fine-tunes with: the mitigator's defaults when the panel was built (kept as constants, so that
# changing a default does not silently re-run the evidence it was chosen on). The grid below varies rate and BatchNorm.
PANEL_FINETUNE = dict(top_k=55, finetune_epochs=10, finetune_lr=0.003, finetune_batch_size=128, bias_ratio=0.9,
                      synthetic_ratio=1.0, bn_statistics="real")
PANEL_LRS = (0.001, 0.003, 0.01)
PANEL_GUARD_SCORES = ("probe_worst_group", "synthetic_worst_group", "accuracy")
# The label-free guards that choose only the BatchNorm handling of the last epoch (CandidateSelection(candidates=
# "last")): measured on the panel and on the held-out families alike.
LAST_EPOCH_GUARD_SCORES = ("probe_mean_group", "probe_worst_group", "accuracy")
LAST_EPOCH_GUARDS = [{"bn_statistics": "real", "validate_on": validate_on, "selection_score": score,
                      "batchnorm_variants": True, "selection_candidates": "last"}
                     for validate_on, scores in (("val_train", LAST_EPOCH_GUARD_SCORES),
                                                 # scored on the training images too: four times the minority
                                                 # examples (the candidates were fine-tuned on synthetic ones)
                                                 ("train+val_train", ("probe_mean_group", "accuracy")))
                     for score in scores]
# The guard with 200 group labels (the balanced validation split, 50 per cell): worst_group over every candidate
# (the recommended labelled mode), the less noisy mean over the labelled cells, and worst_group choosing only the
# last epoch's BatchNorm handling (two candidates: less room to pick one by chance on 200 images).
LABELLED_GUARDS = [{"bn_statistics": "real", "batchnorm_variants": True},
                   {"bn_statistics": "real", "batchnorm_variants": True, "selection_score": "mean_group"},
                   {"bn_statistics": "real", "batchnorm_variants": True, "selection_candidates": "last"}]


def panel():
    """Which fine-tuning default carries over to data it was not chosen on?

    Four families (``PANEL_FAMILIES``): the embedded coloured MNIST with rendered digits at the four style-shift
    levels; coloured handwritten digits whose synthetic stand-in is other MNIST digits with a stroke gap (rotated,
    scaled, thickened, blurred); coloured Fashion-MNIST with the same stroke gap; coloured Fashion-MNIST whose
    stand-in is shrunk to 10 pixels and blown back up (a resolution gap). 1,000 biased training images each.
    Runs: ERM; full fine-tuning; the default criterion at every fine-tuning rate in ``PANEL_LRS`` x every
    BatchNorm handling (the fixed variants, one of which is the package's default); the default criterion with
    the held-out guard on the training-distribution validation split (no group labels) under each
    ``PANEL_GUARD_SCORES`` score, its candidates over epochs, interpolations and BatchNorm handling, and under each
    ``LAST_EPOCH_GUARD_SCORES`` score choosing only the last epoch's BatchNorm handling; the guard
    with 200 group labels (``LABELLED_GUARDS``: worst_group or mean_group on the balanced validation split).
    Every run as the method returns it (no per-epoch checkpoint selection): the panel compares what a user gets.
    5 seeds.
    """
    tasks = [{**PANEL_SIZES, **spec, "family": family} for family, specs in PANEL_FAMILIES for spec in specs]
    fixed = [{"bn_statistics": b, "finetune_lr": lr} for lr in PANEL_LRS for b in BN_SETTINGS]
    guards = [{"bn_statistics": "real", "validate_on": "val_train", "selection_score": score,
               "batchnorm_variants": True} for score in PANEL_GUARD_SCORES]
    return Suite(
        "panel", "The defaults panel: four data families (rendered digits at four style gaps, handwritten digits "
        "with a stroke gap, Fashion-MNIST with a stroke gap and with a resolution gap), 1,000 biased training "
        "images each; ERM, full fine-tuning, the default criterion at fine-tuning rates "
        f"{', '.join(map(str, PANEL_LRS))} x BatchNorm {', '.join(BN_SETTINGS)}, and guarded by "
        f"{', '.join(PANEL_GUARD_SCORES)} without group labels (and by {', '.join(LAST_EPOCH_GUARD_SCORES)} choosing "
        "only the last epoch's BatchNorm handling) and with 200 (worst_group, mean_group, worst_group on the last "
        "epoch); 5 seeds.",
        tasks, ("erm", "full", "normalized", "normalized_guarded"), (0, 1, 2, 3, 4), dict(EMBEDDED_RECIPE),
        dict(PANEL_FINETUNE), variants={"normalized": fixed + guards + LAST_EPOCH_GUARDS,
                                        "normalized_guarded": LABELLED_GUARDS},
        checkpoints=False)


# Families the defaults were not chosen on (aimfair-bench panel-holdout): another (data, gap) pair, and another
# size and bias (the 800-image case a new user met, its minority at 2 %).
HOLDOUT_FAMILIES = (
    ("handwritten digits, resolution gap", [
        dict(dataset="coloured_mnist", name="digits, held-out handwritten, resolution gap",
             provider={"kind": "heldout", "gap": "resolution", "low_size": 10})]),
    ("Fashion-MNIST, stroke gap, 800 images, 2 % minority", [
        dict(dataset="coloured_fashion", path=None, name="Fashion-MNIST, stroke gap, 800 images, 2 % minority",
             n_train=800, minority_share=0.02, provider={"kind": "heldout", "gap": "stroke", "max_images": 10000})]),
)


def panel_holdout():
    """Do the defaults chosen on the panel carry over to data they were not chosen on?

    Two families outside ``PANEL_FAMILIES`` (``HOLDOUT_FAMILIES``), with the panel's runs except the label-free
    guards over every epoch (which failed there): ERM, full fine-tuning, the fixed variants (rate x BatchNorm),
    the last-epoch guards (``LAST_EPOCH_GUARD_SCORES``) and the guard with 200 group labels; the panel's tables and
    bars. 5 seeds.
    """
    tasks = [{**PANEL_SIZES, **spec, "family": family} for family, specs in HOLDOUT_FAMILIES for spec in specs]
    fixed = [{"bn_statistics": b, "finetune_lr": lr} for lr in PANEL_LRS for b in BN_SETTINGS]
    return Suite(
        "panel-holdout", "The defaults on families they were not chosen on: handwritten digits with a resolution "
        "gap; Fashion-MNIST with a stroke gap at 800 training images and a 2 % minority; ERM, full fine-tuning, "
        f"the default criterion at rates {', '.join(map(str, PANEL_LRS))} x BatchNorm {', '.join(BN_SETTINGS)}, "
        f"guarded by {', '.join(LAST_EPOCH_GUARD_SCORES)} choosing only the last epoch's BatchNorm handling, and "
        "the guards with 200 group labels; 5 seeds.",
        tasks, ("erm", "full", "normalized", "normalized_guarded"), (0, 1, 2, 3, 4), dict(EMBEDDED_RECIPE),
        dict(PANEL_FINETUNE), variants={"normalized": fixed + LAST_EPOCH_GUARDS,
                                        "normalized_guarded": LABELLED_GUARDS},
        checkpoints=False)


SUITES = {"quick": quick, "tune": tune, "paper": paper, "topk": topk, "fashion": fashion, "criteria": criteria,
          "baselines": baselines, "adult": adult, "prompts": prompts, "custom": custom,
          "domain-gap": domain_gap, "batchnorm": batchnorm, "panel": panel, "panel-holdout": panel_holdout, "vit": vit}


TUNED_SUITES = ("quick", "baselines", "domain-gap", "batchnorm")  # builders that take tuned_path


def build_suite(name, **kwargs):
    """A fresh copy of a named suite (see ``SUITES``); ``kwargs`` go to its builder (``quick(tuned_path=...)``)."""
    if name not in SUITES:
        raise ValueError(f"Unknown suite {name!r}; expected one of {list(SUITES)}.")
    return copy.deepcopy(SUITES[name](**kwargs))
