"""The paper's Table 5 on the embedded data: train only on balanced synthetic images, test on real ones.

Synthetic images come from :class:`RenderedDigitsProvider` driven by
  - one plain prompt per cell ("Image of the digit 5, 6, 7, 8 or 9 on a red background."),
  - 25 contextual prompts per cell without poses (font, weight, slant, size, stroke, blur, noise),
  - 50 contextual prompts per cell without poses,
  - 50 contextual prompts per cell with poses (angle and position; the paper's "+ Head Poses").
A narrow ResNet-18 is trained with the embedded ERM recipe on ``n_synthetic`` balanced images and
tested on the balanced real coloured-MNIST test split (handwritten digits).

Run: ``python -m benchmarks.prompt_ablation [--seeds 0 1 2] [--out results/prompt_ablation]``.
"""

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from aimfair_plugin.datasets import make_colored_mnist
from aimfair_plugin.estimators import ImageClassifier
from aimfair_plugin.synth import ContextualPromptBuilder, PlainPromptBuilder, RenderedDigitsProvider
from aimfair_plugin.synth import balanced_group_counts

from ._common import CELL_COLUMNS, ERM, evaluate, mean_std_table

COLORS = ("red", "blue")


def prompt_settings(seed):
    """The four rows of Table 5: (label, prompt builder)."""
    contextual = dict(dataset="digits", random_state=seed)
    return [
        ("Plain Prompt (1)", PlainPromptBuilder(5, COLORS, dataset="digits")),
        ("Contextual Prompts (25)", ContextualPromptBuilder(5, COLORS, n_prompts=25, head_poses=False, **contextual)),
        ("Contextual Prompts (50)", ContextualPromptBuilder(5, COLORS, n_prompts=50, head_poses=False, **contextual)),
        ("Contextual + Poses (50)", ContextualPromptBuilder(5, COLORS, n_prompts=50, head_poses=True, **contextual)),
    ]


def run(seeds, n_synthetic, image_size):
    records = []
    for seed in seeds:
        data = make_colored_mnist(image_size=image_size, random_state=seed)
        for label, builder in prompt_settings(seed):
            start = time.perf_counter()
            X, y, _ = RenderedDigitsProvider(builder).sample(
                balanced_group_counts(n_synthetic), image_shape=(3, image_size, image_size), random_state=seed
            )
            model = ImageClassifier(random_state=seed, **ERM).fit(X, y)
            records.append(evaluate(label, model, data.X_test, data.y_test, data.s_test, seed=seed,
                                    seconds=round(time.perf_counter() - start, 1)))
            print(f"seed {seed} {label}: ACC {records[-1]['ACC']:.2f} WST {records[-1]['WST']:.2f}", flush=True)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-synthetic", type=int, default=3000)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", default="results/prompt_ablation")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = run(args.seeds, args.n_synthetic, args.image_size)
    pd.DataFrame(records).to_csv(out / "records.csv", index=False)
    table = mean_std_table(records, "method", ["ACC", "WST", "EO", "STD", *CELL_COLUMNS])
    title = (f"Trained on {args.n_synthetic} balanced rendered digits only, tested on real coloured MNIST "
             f"({args.image_size}px), seeds {args.seeds} (mean ± std)")
    print(f"\n{title}:\n{table.to_markdown()}")
    (out / "summary.md").write_text(f"{title}\n\n{table.to_markdown()}\n")


if __name__ == "__main__":
    main()
