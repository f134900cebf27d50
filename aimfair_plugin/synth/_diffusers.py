"""DiffusersProvider: synthetic images from a diffusers text-to-image pipeline, cached durably on disk.

The cache is a folder a person can browse::

    cache_dir/
      settings.json          what every image here was generated with
      0_1/00000.png ...      images of the cell y=0, s=1
      0_1/manifest.jsonl     one JSON line per image: file, prompt, image seed, settings, device, dtype

Image ``i`` of a cell always uses the prompt ``prompts[cell][i % n_prompts]``
and a seed derived from ``(seed, y, s, i)``, so generation is resumable and
reproducible: an interrupted run restarts where it stopped and makes the same
images it would have made. Images are written to a temporary name and renamed
(atomic on POSIX and Windows), and each manifest line is written after its
image, so an interruption leaves at most an image without a record, which is
regenerated. A file that is not a complete image (truncated, corrupted: PIL's
``verify`` fails) is regenerated too. A cache generated with other settings (model, scheduler,
steps, guidance, resolution, seed) is refused, and an image whose recorded
prompt differs from the current prompt for its index is regenerated, so
nothing is mixed silently. Device and dtype are recorded but not compared:
a cache made in fp16 on a GPU reads on a CPU machine without the model.

Multi-GPU: run the generating script under ``accelerate launch``; the missing
images are split across processes (accelerate's ``PartialState``), each
process writes its own manifest shard (``manifest.rank{r}.jsonl``), and all
wait for each other before reading. See ``python -m aimfair_plugin.synth.generate``.
"""

import copy
import json
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from .._device import resolve_device
from .._io import atomic_path, atomic_write
from ..datasets import CELLS, check_image_files
from ._base import SyntheticDataProvider, check_group_counts
from ._folder import check_image_shape
from ._prompts import resolve_prompts

SETTINGS_FILE = "settings.json"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def image_seed(seed, cell, index):
    """The generator seed of image ``index`` of ``cell``: independent of batch size and process count."""
    return int(np.random.SeedSequence([int(seed), int(cell[0]), int(cell[1]), int(index)]).generate_state(1)[0])


def _requested(group_counts):
    return [(cell, i) for cell, count in sorted(group_counts.items()) for i in range(int(count))]


def _append_line(path, line):
    """Append one line; a torn last line from an interrupted run is closed first so it stays alone."""
    with open(path, "ab") as fh:
        if fh.tell() > 0:
            with open(path, "rb") as read:
                read.seek(-1, os.SEEK_END)
                if read.read(1) != b"\n":
                    fh.write(b"\n")
        fh.write(line.encode("utf-8") + b"\n")


def _model_name(pipeline):
    name = pipeline if isinstance(pipeline, (str, os.PathLike)) else getattr(pipeline, "name_or_path", "") or ""
    name = str(name)
    return os.path.abspath(name) if name and os.path.isdir(name) else name or type(pipeline).__name__


class DiffusersProvider(SyntheticDataProvider):
    """Synthetic images from a diffusers text-to-image pipeline, through a durable on-disk cache.

    Parameters
    ----------
    pipeline : diffusers pipeline, str or path
        A loaded pipeline, or a model id / local folder loaded with
        ``AutoPipelineForText2Image.from_pretrained`` (Stable Diffusion 1.5,
        2.1, XL and other text-to-image models). Loading happens only when an
        image has to be generated, so a complete cache needs no model.
    prompts : ContextualPromptBuilder, dict or path
        Prompts per (y, s) cell; images are spread over a cell's prompts.
    cache_dir : str or Path
        Where images and the manifest live (see the module docstring).
    image_size : int, default=224
        Side of the images when ``sample`` gets no ``image_shape`` (the paper
        generates at 512 and trains at 224). ``sample`` returns file paths;
        consumers decode them at the size they train on.
    num_inference_steps : int, default=50
    guidance_scale : float, default=9.0
        The paper's settings (SD 2.1, DDIM, 50 steps, guidance 9).
    batch_size : int, default=8
        Images per pipeline call.
    generation_size : int, optional
        Height and width passed to the pipeline; None keeps the model's own.
    dtype : {"auto", "float16", "bfloat16", "float32"}, default="auto"
        "auto": float16 on CUDA, float32 elsewhere.
    device : str, default="auto"
    random_state : int, default=0
        Base of the per-image seeds (an int: image i of a cell always gets
        the same seed, whichever process or batch generates it). Recorded in
        the cache as ``"seed"``.
    verbose : int, default=1
        0 hides the progress bar.

    Examples
    --------
    >>> from aimfair_plugin.synth import ContextualPromptBuilder, DiffusersProvider
    >>> prompts = ContextualPromptBuilder("Smiling", "Male", random_state=0)   # doctest: +SKIP
    >>> provider = DiffusersProvider("stabilityai/stable-diffusion-2-1-base", prompts,
    ...                              cache_dir="synthetic/celeba_smiling_male")  # doctest: +SKIP
    >>> X, y, s = provider.sample({(0, 0): 5000, (0, 1): 5000, (1, 0): 5000, (1, 1): 5000})  # doctest: +SKIP
    """

    def __init__(
        self,
        pipeline,
        prompts,
        *,
        cache_dir,
        image_size=224,
        num_inference_steps=50,
        guidance_scale=9.0,
        batch_size=8,
        generation_size=None,
        dtype="auto",
        device="auto",
        random_state=0,
        verbose=1,
    ):
        self.pipeline = pipeline
        self.prompts = prompts
        self.cache_dir = cache_dir
        self.image_size = image_size
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.batch_size = batch_size
        self.generation_size = generation_size
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __deepcopy__(self, memo):
        # sklearn's clone deep-copies non-estimator parameters: copies share the
        # (large, read-only) pipeline instead of duplicating its weights.
        new = copy.copy(self)
        new.prompts = copy.deepcopy(self.prompts, memo)
        return new

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_loaded_pipeline", None)
        return state

    # -- settings and cache layout ----------------------------------------------------

    _parameter_constraints = {
        "cache_dir": [str, os.PathLike],
        "image_size": [Interval(Integral, 8, None, closed="left")],
        "num_inference_steps": [Interval(Integral, 1, None, closed="left")],
        "guidance_scale": [Interval(Real, None, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "generation_size": [None, Interval(Integral, 8, None, closed="left")],
        "dtype": [StrOptions({"auto", *DTYPES}), torch.dtype],
        "device": [str, torch.device],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    @property
    def base_seed(self):
        """The base of the per-image seeds: ``random_state``."""
        return int(self.random_state)

    def cache_settings(self):
        """The settings every image in the cache must share."""
        scheduler = None
        if not isinstance(self.pipeline, (str, os.PathLike)):
            scheduler = type(getattr(self.pipeline, "scheduler", None)).__name__
        return {
            "model": _model_name(self.pipeline),
            "scheduler": scheduler,
            "num_inference_steps": int(self.num_inference_steps),
            "guidance_scale": float(self.guidance_scale),
            "generation_size": self.generation_size,
            "seed": self.base_seed,
        }

    def _check_cache(self):
        root = Path(self.cache_dir)
        root.mkdir(parents=True, exist_ok=True)
        settings = self.cache_settings()
        path = root / SETTINGS_FILE
        if not path.exists():
            atomic_write(path, json.dumps(settings, indent=2) + "\n")
            return settings
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"Cannot read {path}: {exc}; delete it or use another cache_dir.") from exc
        if stored.get("scheduler") is None or settings["scheduler"] is None:
            stored["scheduler"] = settings["scheduler"] = stored.get("scheduler") or settings["scheduler"]
        diff = {k: (stored.get(k), v) for k, v in settings.items() if stored.get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: cache has {a!r}, this provider {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"{root} holds images made with different settings ({detail}). Use another cache_dir.")
        if stored != settings:  # fill in a scheduler learned now
            atomic_write(path, json.dumps(settings, indent=2) + "\n")
        return settings

    @staticmethod
    def _records(folder):
        """The last manifest record per file name, over all shards; a torn last line is ignored."""
        records = {}
        for shard in sorted(folder.glob("manifest*.jsonl")):
            for line in shard.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "file" in record:
                    records[record["file"]] = record
        return records

    def _planned(self, cell, index, prompts):
        cell_prompts = prompts[cell]
        return {"prompt": cell_prompts[index % len(cell_prompts)], "image_seed": image_seed(self.base_seed, cell, index)}

    def _is_current(self, record, plan):
        return (
            record is not None
            and record.get("prompt") == plan["prompt"]
            and record.get("image_seed") == plan["image_seed"]
        )

    # -- generation -------------------------------------------------------------------

    def _torch_dtype(self, device):
        if self.dtype == "auto":
            return torch.float16 if str(device).startswith("cuda") else torch.float32
        return self.dtype if isinstance(self.dtype, torch.dtype) else DTYPES[self.dtype]

    def _load_pipeline(self, device):
        loaded = getattr(self, "_loaded_pipeline", None)
        if loaded is not None:
            return loaded
        dtype = self._torch_dtype(device)
        if isinstance(self.pipeline, (str, os.PathLike)):
            from diffusers import AutoPipelineForText2Image

            pipe = AutoPipelineForText2Image.from_pretrained(str(self.pipeline), dtype=dtype)
        else:
            pipe = self.pipeline
        pipe = pipe.to(device) if pipe.dtype == dtype else pipe.to(device, dtype)
        pipe.set_progress_bar_config(disable=True)
        self._loaded_pipeline = pipe
        return pipe

    @staticmethod
    def _distributed_state():
        """accelerate's ``PartialState`` under ``accelerate launch`` with several processes, else None."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        from accelerate import PartialState

        state = PartialState()
        return state if state.num_processes > 1 else None

    def missing(self, group_counts, *, decode=True):
        """``[(cell, index)]`` of images 0..count-1 per cell that are absent, unreadable or outdated.

        ``decode=True`` checks each existing file is a complete image (PIL's ``verify``, without decoding the
        pixels); ``decode=False`` only checks that it exists (``sample`` verifies and repairs then).
        """
        check_group_counts(group_counts, self.available_cells())
        prompts = resolve_prompts(self.prompts)
        self._check_cache()
        todo = []
        for cell, count in sorted(group_counts.items()):
            if not count:
                continue
            if cell not in prompts:
                raise ValueError(f"No prompt for cell (y={cell[0]}, s={cell[1]}).")
            folder = Path(self.cache_dir) / f"{cell[0]}_{cell[1]}"
            records = self._records(folder) if folder.is_dir() else {}
            for index in range(int(count)):
                name = f"{index:05d}.png"
                if not self._is_current(records.get(name), self._planned(cell, index, prompts)):
                    todo.append((cell, index))
                    continue
                if not decode:
                    if not (folder / name).is_file():
                        todo.append((cell, index))
                    continue
                try:
                    check_image_files([folder / name])
                except ValueError:
                    todo.append((cell, index))
        return todo

    def generate(self, group_counts, *, decode=True):
        """Make sure images 0..count-1 of each cell are in the cache; returns how many this process made."""
        self._validate_params()
        todo = self.missing(group_counts, decode=decode)
        state = self._distributed_state()
        if state is not None:
            # Each image has one owner, fixed by its place among all requested images, so
            # processes need not agree on what is missing (one may scan after another wrote).
            order = {item: i for i, item in enumerate(_requested(group_counts))}
            todo = [item for item in todo if order[item] % state.num_processes == state.process_index]
        made = self._generate(todo, state)
        if state is not None:
            state.wait_for_everyone()
        return made

    def _generate(self, todo, state):
        if not todo:
            return 0
        prompts = resolve_prompts(self.prompts)
        device = str(state.device) if state is not None else resolve_device(self.device)
        pipe = self._load_pipeline(device)
        shard = "manifest.jsonl" if state is None else f"manifest.rank{state.process_index}.jsonl"
        settings = self.cache_settings()
        extra = {} if self.generation_size is None else {"height": self.generation_size, "width": self.generation_size}
        bar = tqdm(total=len(todo), desc="Generating synthetic images", unit="img", disable=not self.verbose)
        for start in range(0, len(todo), int(self.batch_size)):
            batch = todo[start : start + int(self.batch_size)]
            plans = [self._planned(cell, index, prompts) for cell, index in batch]
            generators = [torch.Generator(device=device).manual_seed(p["image_seed"]) for p in plans]
            images = pipe(
                prompt=[p["prompt"] for p in plans],
                num_inference_steps=int(self.num_inference_steps),
                guidance_scale=float(self.guidance_scale),
                generator=generators,
                output_type="pil",
                **extra,
            ).images
            for (cell, index), plan, image in zip(batch, plans, images):
                folder = Path(self.cache_dir) / f"{cell[0]}_{cell[1]}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{index:05d}.png"
                with atomic_path(folder / name) as tmp:
                    image.save(tmp, format="PNG")
                record = {"file": name, "index": index, **plan, "settings": settings, "device": device,
                          "dtype": str(self._torch_dtype(device)).replace("torch.", "")}
                _append_line(folder / shard, json.dumps(record))
            bar.update(len(batch))
        bar.close()
        return len(todo)

    # -- the provider contract --------------------------------------------------------

    def available_cells(self):
        """The four (y, s) cells of the paper's binary setting: its prompts name two classes and two groups."""
        return set(CELLS)

    def sample(self, group_counts, *, image_shape=None, random_state=None):
        """Paths of images ``0..count-1`` of each cell in the cache, generating the missing ones first.

        Returns image **paths** (a 1-D array of ``str``), decoded by the consumer batch by batch at the size it
        trains on (see :class:`ImageFolderProvider`). Every file is checked to be a complete image without
        decoding it; one that is not (truncated, corrupted) is generated again. ``random_state`` shuffles the
        order within each cell; which images are returned depends only on the counts, so the biased and the
        balanced synthetic sets of one fit share their images, as upstream.
        """
        check_image_shape(image_shape, self.image_size)  # refuses a non-RGB request
        self.generate(group_counts, decode=False)
        rng = check_random_state(random_state)
        order = [(cell, int(i)) for cell, count in sorted(group_counts.items()) if count
                 for i in rng.permutation(int(count))]
        broken = []
        for item in order:
            try:
                check_image_files([self._path(item)])
            except ValueError:
                broken.append(item)
        if broken:
            self._generate(broken, None)
            check_image_files([self._path(item) for item in broken])
        X = np.asarray([str(self._path(item)) for item in order], dtype=str)
        y = np.asarray([cell[0] for cell, _ in order], dtype=int)
        s = np.asarray([cell[1] for cell, _ in order], dtype=int)
        return X, y, s

    def _path(self, item):
        (y, s), index = item
        return Path(self.cache_dir) / f"{y}_{s}" / f"{index:05d}.png"
