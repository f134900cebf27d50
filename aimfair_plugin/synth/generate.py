"""Fill a DiffusersProvider cache from the command line, on one GPU or many.

One process::

    python -m aimfair_plugin.synth.generate stabilityai/stable-diffusion-2-1-base \\
        --prompts prompts.json --cache-dir synthetic/smiling_male --per-cell 5000

Several GPUs (the missing images are split across processes, each writes its
own manifest shard)::

    accelerate launch --num_processes 4 -m aimfair_plugin.synth.generate MODEL \\
        --prompts prompts.json --cache-dir synthetic/smiling_male --per-cell 5000

Make ``prompts.json`` with :func:`aimfair_plugin.synth.save_prompts` (or
``--target``/``--protected`` to build contextual prompts here). Re-running the
same command resumes an interrupted run.
"""

import argparse

from ..datasets import CELLS
from ._diffusers import DiffusersProvider
from ._prompts import ContextualPromptBuilder, load_prompts, save_prompts


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m aimfair_plugin.synth.generate", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="diffusers model id or local folder")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--per-cell", type=int, required=True, help="images per (y, s) cell")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="prompt JSON file (save_prompts format)")
    source.add_argument("--target", help="target attribute, e.g. Smiling (builds contextual prompts)")
    parser.add_argument("--protected", help="protected attribute with --target, e.g. Male")
    parser.add_argument("--dataset", default="celeba", choices=["celeba", "utkface"])
    parser.add_argument("--n-prompts", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=9.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--generation-size", type=int, default=None)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.target is not None:
        if args.protected is None:
            raise SystemExit("--target needs --protected.")
        builder = ContextualPromptBuilder(
            args.target, args.protected, n_prompts=args.n_prompts, dataset=args.dataset, random_state=args.seed
        )
        prompts = builder.build()
    else:
        prompts = load_prompts(args.prompts)
    provider = DiffusersProvider(
        args.model,
        prompts,
        cache_dir=args.cache_dir,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        batch_size=args.batch_size,
        generation_size=args.generation_size,
        dtype=args.dtype,
        random_state=args.seed,
    )
    made = provider.generate({cell: args.per_cell for cell in CELLS})
    save_prompts(prompts, f"{args.cache_dir}/prompts.json")
    print(f"Generated {made} images in this process; cache: {args.cache_dir}")
    return made


if __name__ == "__main__":
    main()
