"""RenderedDigitsProvider: the embedded, offline stand-in for a text-to-image model.

It plays the diffusion model's role in the coloured-MNIST benchmark. A prompt
("Image of the digit 7 on a red background, in a serif font, bold, rotated
clockwise, ...") is parsed into rendering values; the digit is typeset with a
real font (matplotlib's bundled TTFs or Pillow's default font), so the
synthetic domain (typeset) differs from the real one (handwritten), and the
protected attribute (background colour) is exactly what the prompt says. Like
a diffusion model, a fixed prompt with different seeds gives slightly
different images (small random pose jitter); everything a prompt does not say
takes a neutral value, so one plain prompt gives a narrow, repetitive set.

Glyphs are typeset once per (font, weight, digit) and cached; every image is
then one batched affine warp plus morphology, blur and noise in torch, which
renders thousands of images per second on a CPU.
"""

import functools
import os
import re
from importlib import resources
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval

from ..datasets import BACKGROUND_COLORS, CELLS
from ._base import SyntheticDataProvider, check_group_counts
from ._digit_styles import FONT_FILES, digits_named, parse_style
from ._prompts import ContextualPromptBuilder, resolve_prompts

# Background colours by name; "red" and "blue" are make_colored_mnist's own (s = 0 and s = 1).
PALETTE = {
    "red": tuple(BACKGROUND_COLORS[0].tolist()),
    "blue": tuple(BACKGROUND_COLORS[1].tolist()),
    "green": (0.08, 0.45, 0.12),
    "purple": (0.4, 0.1, 0.5),
}
ATLAS = 64  # glyph canvas side; the glyph is scaled to GLYPH_FILL of it
GLYPH_FILL = 0.75
JITTER = {"rotation": 4.0, "shift": 0.03, "scale": 0.04}  # per-image "seed noise"
_BACKGROUND = re.compile(r"on an? (\w+) background")


def _font_path(name):
    if name is None:
        return None
    return str(resources.files("matplotlib").joinpath("mpl-data", "fonts", "ttf", name))


@functools.lru_cache(maxsize=None)
def glyph(font, bold, digit):
    """A digit typeset in white on black, ``(ATLAS, ATLAS)`` float32, scaled to a fixed height.

    Returns the glyph and whether the weight was faked (no bold file), in
    which case the renderer thickens the stroke instead.
    """
    regular, bold_file = FONT_FILES[font]
    file = bold_file if (bold and bold_file) else regular
    size = 4 * ATLAS
    face = ImageFont.truetype(_font_path(file), size) if file else ImageFont.load_default(size=size)
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(canvas).text((size // 2, size // 4), str(digit), fill=255, font=face)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"Font {font!r} renders no glyph for the digit {digit}.")
    crop = canvas.crop(box)
    height = int(round(ATLAS * GLYPH_FILL))
    width = max(1, min(ATLAS, int(round(crop.width * height / crop.height))))
    crop = crop.resize((width, height), Image.LANCZOS)
    atlas = Image.new("L", (ATLAS, ATLAS), 0)
    atlas.paste(crop, ((ATLAS - width) // 2, (ATLAS - height) // 2))
    return np.asarray(atlas, dtype=np.float32) / 255.0, bool(bold and not bold_file)


def _morph(x, radius):
    """Dilate (radius > 0) or erode (radius < 0) grey images by a square of that radius."""
    if radius == 0:
        return x
    k = 2 * abs(radius) + 1
    if radius > 0:
        return F.max_pool2d(x, k, stride=1, padding=abs(radius))
    return -F.max_pool2d(-x, k, stride=1, padding=abs(radius))


def _blur(x, sigma):
    if sigma <= 0:
        return x
    half = max(1, int(np.ceil(2.5 * sigma)))
    t = torch.arange(-half, half + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = F.conv2d(F.pad(x, (half, half, 0, 0), mode="replicate"), k)
    return F.conv2d(F.pad(x, (0, 0, half, half), mode="replicate"), k.transpose(2, 3))


def render(specs, image_size, rng):
    """Render a list of parsed prompt specs (dicts with ``digit``, ``color`` and style values).

    Returns float32 ``(N, 3, H, W)`` in [0, 1].
    """
    h, w = image_size
    n = len(specs)
    glyphs, fake_bold = zip(*(glyph(sp["font"], sp["weight"], sp["digit"]) for sp in specs))
    x = torch.from_numpy(np.stack(glyphs)[:, None])
    angle = np.radians([sp["rotation"] for sp in specs] + rng.uniform(-1, 1, n) * JITTER["rotation"])
    zoom = np.array([sp["size"] for sp in specs]) / GLYPH_FILL * (1 + rng.uniform(-1, 1, n) * JITTER["scale"])
    shift = np.array([sp["position"] for sp in specs]) + rng.uniform(-1, 1, (n, 2)) * JITTER["shift"]
    shear = np.array([sp["slant"] for sp in specs])
    # affine_grid maps output coordinates to input ones: undo translation, rotation, slant, then zoom.
    cos, sin = np.cos(angle), np.sin(angle)
    a = np.empty((n, 2, 3))
    a[:, 0, 0], a[:, 0, 1] = (cos + shear * sin) / zoom, (-sin + shear * cos) / zoom
    a[:, 1, 0], a[:, 1, 1] = sin / zoom, cos / zoom
    t = 2 * shift
    a[:, :, 2] = -np.einsum("nij,nj->ni", a[:, :, :2], t)
    theta = torch.from_numpy(a).float()
    grid = F.affine_grid(theta, (n, 1, 2 * h, 2 * w), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    strokes = np.array([sp["stroke"] + (1 if fb else 0) for sp, fb in zip(specs, fake_bold)])
    for radius in np.unique(strokes):
        idx = torch.from_numpy(np.flatnonzero(strokes == radius))
        x[idx] = _morph(x[idx], int(radius))
    x = F.avg_pool2d(x, 2)
    sigmas = np.array([sp["blur"] for sp in specs])
    for sigma in np.unique(sigmas):
        idx = torch.from_numpy(np.flatnonzero(sigmas == sigma))
        x[idx] = _blur(x[idx], float(sigma))
    g = x.clamp(0, 1).numpy()
    background = np.array([PALETTE[sp["color"]] for sp in specs], dtype=np.float32)[:, :, None, None]
    rgb = g + (1.0 - g) * background
    noise = np.array([sp["noise"] for sp in specs], dtype=np.float32)[:, None, None, None]
    rgb = rgb + noise * rng.standard_normal(rgb.shape).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


# What one unit of ``style_shift`` does (the gap knob): blend in diagonal grey stripes, lighten every pixel toward
# white, and blur with a sigma relative to a 32 px image.
STYLE_SHIFT = {"stripes": 0.35, "lighten": 0.25, "blur": 0.6}
MAX_STYLE_SHIFT = 2.5


def shift_style(X, strength):
    """Move rendered images further from real photographs of digits: ``strength`` (0 = unchanged) scales a
    stripe texture, a lightening and a blur (``STYLE_SHIFT``). Deterministic; float32 ``(N, 3, H, W)`` in [0, 1]."""
    if strength == 0:
        return X
    n, c, h, w = X.shape
    rows, cols = np.mgrid[0:h, 0:w]
    period = max(3.0, h / 8)
    stripes = (0.5 + 0.5 * np.sin(2 * np.pi * (rows + cols) / period)).astype(np.float32)
    blend = min(1.0, STYLE_SHIFT["stripes"] * strength)
    x = (1 - blend) * X + blend * stripes[None, None]
    x = x + min(1.0, STYLE_SHIFT["lighten"] * strength) * (1 - x)
    sigma = STYLE_SHIFT["blur"] * strength * h / 32
    x = _blur(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(n * c, 1, h, w), sigma)
    return np.clip(x.reshape(n, c, h, w).numpy(), 0.0, 1.0).astype(np.float32)


def parse_prompt(prompt):
    """Rendering values for one prompt: the digits it allows, its background colour and its style."""
    digits = sorted(digits_named(prompt))
    if not digits:
        raise ValueError(f"Prompt names no digit: {prompt!r}.")
    match = _BACKGROUND.search(prompt.lower())
    if not match or match.group(1) not in PALETTE:
        raise ValueError(
            f"Prompt must say 'on a <colour> background' with a colour from {sorted(PALETTE)}: {prompt!r}."
        )
    return {"digits": digits, "color": match.group(1), **parse_style(prompt)}


def check_cells_disjoint(parsed_cells):
    """Refuse prompts whose digits or colours would put one image in two cells."""
    for key, index in (("digits", 0), ("color", 1)):
        values = {0: set(), 1: set()}
        for cell, parsed in parsed_cells.items():
            for spec in parsed:
                values[cell[index]].update(spec[key] if key == "digits" else [spec[key]])
        shared = values[0] & values[1]
        if shared:
            name = "y" if index == 0 else "s"
            raise ValueError(
                f"Prompts for {name}=0 and {name}=1 share {key} {sorted(shared)}; each {key} must belong to one "
                f"value of {name}."
            )


class RenderedDigitsProvider(SyntheticDataProvider):
    """Prompt-driven digit renderer: the default provider of the embedded benchmark.

    Parameters
    ----------
    prompts : ContextualPromptBuilder, dict, path or None
        Prompts per (y, s) cell. Each must name its digit(s) and say
        "on a <colour> background"; style phrases are listed in the builder's
        digit vocabulary. None: 50 contextual prompts per cell for ``target``
        and ``colors`` (seeded, so always the same 200).
    target : int or collection, default=5
        Used only when ``prompts`` is None: the class-1 digits as in
        :func:`~aimfair_plugin.datasets.make_colored_mnist`.
    colors : (str, str), default=("red", "blue")
        Used only when ``prompts`` is None: background colours for s = 0 and
        s = 1, the same colours as the real coloured MNIST.
    image_size : int, default=32
        Side of the images when ``sample`` is given no ``image_shape``.
    style_shift : float, default=0.0
        How far the images are pushed from the real digits' style (the
        benchmark's domain-gap knob, 0 to 2.5): a diagonal stripe texture
        blended in with weight ``0.35 * style_shift``, every pixel lightened
        by ``0.25 * style_shift`` of its distance to white, and a Gaussian
        blur of sigma ``0.6 * style_shift`` pixels at 32 px. The labels and
        the background colour, so the cells, are unchanged.

    Examples
    --------
    >>> provider = RenderedDigitsProvider()
    >>> X, y, s = provider.sample({(0, 0): 2, (1, 1): 2}, random_state=0)
    >>> X.shape, y.tolist(), s.tolist()
    ((4, 3, 32, 32), [0, 0, 1, 1], [0, 0, 1, 1])
    """

    _parameter_constraints = {"prompts": [None, dict, str, os.PathLike, HasMethods(["build"])],
                              "target": [Interval(Integral, 0, 9, closed="both"), tuple, list, set],
                              "colors": [tuple, list], "image_size": [Interval(Integral, 8, None, closed="left")],
                              "style_shift": [Interval(Real, 0, MAX_STYLE_SHIFT, closed="both")]}

    def __init__(self, prompts=None, *, target=5, colors=("red", "blue"), image_size=32, style_shift=0.0):
        self.prompts = prompts
        self.target = target
        self.colors = colors
        self.image_size = image_size
        self.style_shift = style_shift

    def resolved_prompts(self):
        """The prompt dict this provider renders from."""
        if self.prompts is None:
            builder = ContextualPromptBuilder(self.target, tuple(self.colors), dataset="digits", random_state=0)
            return resolve_prompts(builder)
        return resolve_prompts(self.prompts)

    def available_cells(self):
        """The four (y, s) cells of the paper's binary setting: its prompts name two classes and two groups."""
        return set(CELLS)

    def sample(self, group_counts, *, image_shape=None, random_state=None):
        self._validate_params()
        check_group_counts(group_counts, self.available_cells())
        if image_shape is None:
            image_shape = (3, self.image_size, self.image_size)
        if len(image_shape) != 3 or image_shape[0] != 3 or min(image_shape[1:]) < 8:
            raise ValueError(f"RenderedDigitsProvider makes RGB images of side >= 8; got image_shape={image_shape}.")
        prompts = self.resolved_prompts()
        parsed_cells = {cell: [parse_prompt(p) for p in texts] for cell, texts in prompts.items()}
        check_cells_disjoint(parsed_cells)
        rng = check_random_state(random_state)
        specs, ys, ss = [], [], []
        for cell, count in sorted(group_counts.items()):
            if not count:
                continue
            if cell not in parsed_cells:
                raise ValueError(f"No prompt for cell (y={cell[0]}, s={cell[1]}).")
            parsed = parsed_cells[cell]
            # Spread the cell's images evenly over its prompts, in a random order.
            order = rng.permutation(len(parsed))
            for i in range(int(count)):
                spec = dict(parsed[order[i % len(parsed)]])
                spec["digit"] = spec["digits"][rng.randint(len(spec["digits"]))]
                specs.append(spec)
            ys += [cell[0]] * int(count)
            ss += [cell[1]] * int(count)
        if not specs:
            return np.empty((0, *image_shape), np.float32), np.empty(0, int), np.empty(0, int)
        X = shift_style(render(specs, tuple(image_shape[1:]), rng), self.style_shift)
        return X, np.asarray(ys, dtype=int), np.asarray(ss, dtype=int)
