"""RenderedDigitsProvider: prompts control digit, colour and style; seeds reproduce; plain is narrow."""

import numpy as np
import pytest

from aimfair_plugin.datasets._colored import BACKGROUND_COLORS
from aimfair_plugin.synth import PlainPromptBuilder, RenderedDigitsProvider, balanced_group_counts
from aimfair_plugin.synth._digit_styles import FONT_FILES
from aimfair_plugin.synth._rendered import glyph, parse_prompt


def _one(prompt, seed=0, size=32):
    provider = RenderedDigitsProvider({(0, 0): [prompt]})
    return provider.sample({(0, 0): 1}, image_shape=(3, size, size), random_state=seed)[0][0]


def test_background_colour_is_exactly_the_coloured_mnist_colour():
    for word, s in (("red", 0), ("blue", 1)):
        img = _one(f"Image of the digit 1 on a {word} background, small.")
        corner = img[:, :3, :3].reshape(3, -1).mean(axis=1)
        np.testing.assert_allclose(corner, BACKGROUND_COLORS[s], atol=1e-6)


def test_every_font_renders_every_digit():
    for font in FONT_FILES:
        for bold in (False, True):
            for digit in range(10):
                g, _ = glyph(font, bold, digit)
                assert g.shape == (64, 64) and g.max() > 0.9 and 0.03 < g.mean() < 0.5


def test_the_prompt_controls_the_image():
    base = "Image of the digit 8 on a red background"
    plain = _one(base + ".")
    stroke = lambda img: (img.min(axis=0) > 0.6).mean()  # white-ish pixels  # noqa: E731
    assert stroke(_one(base + ", with very thick strokes.")) > 1.3 * stroke(plain)
    assert stroke(_one(base + ", small.")) < 0.7 * stroke(plain)
    left = _one(base + ", shifted left.")
    cols = lambda img: np.average(np.arange(32), weights=img.min(axis=0).sum(axis=0))  # noqa: E731
    assert cols(left) < cols(plain) - 2
    noisy, clean = _one(base + ", with heavy noise."), plain
    assert np.abs(np.diff(noisy, axis=-1)).mean() > 2 * np.abs(np.diff(clean, axis=-1)).mean()
    assert not np.allclose(_one(base + ", in a serif font."), _one(base + ", in a monospace font."))


def test_same_seed_same_images_other_seed_small_jitter():
    provider = RenderedDigitsProvider()
    counts = balanced_group_counts(40)
    a, ya, sa = provider.sample(counts, image_shape=(3, 24, 24), random_state=1)
    b, yb, sb = provider.sample(counts, image_shape=(3, 24, 24), random_state=1)
    np.testing.assert_array_equal(a, b)
    one, two = _one("Image of the digit 4 on a blue background.", 0), _one("Image of the digit 4 on a blue background.", 1)
    assert 0 < np.abs(one - two).mean() < 0.1  # like a diffusion model: same prompt, new seed, a similar image


def test_default_prompts_spread_images_over_digits_and_styles():
    X, y, s = RenderedDigitsProvider().sample(balanced_group_counts(400), random_state=0)
    assert X.shape == (400, 3, 32, 32) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert np.bincount(y * 2 + s).tolist() == [100] * 4
    # images of one cell differ much more with contextual than with plain prompts
    plain = RenderedDigitsProvider(PlainPromptBuilder(5, ("red", "blue"), dataset="digits"))
    Xp, yp, sp = plain.sample(balanced_group_counts(400), random_state=0)
    spread = lambda Z: Z.std(axis=0).mean()  # noqa: E731
    assert spread(X[(y == 1) & (s == 0)]) > 1.2 * spread(Xp[(yp == 1) & (sp == 0)])


def test_plain_prompt_naming_several_digits_draws_each():
    parsed = parse_prompt("Image of the digit 5, 6, 7, 8 or 9 on a red background.")
    assert parsed["digits"] == [5, 6, 7, 8, 9] and parsed["color"] == "red"


def test_thousands_of_images_render_quickly():
    # a behaviour check, not a timing assertion: 2,000 images render in one call without error
    X, _, _ = RenderedDigitsProvider().sample(balanced_group_counts(2000), image_shape=(3, 28, 28), random_state=0)
    assert X.shape == (2000, 3, 28, 28)


@pytest.mark.parametrize(
    "prompts, match",
    [({(0, 0): ["Image of a red background."]}, "names no digit"),
     ({(0, 0): ["Image of the digit 3 in pink."]}, "background"),
     ({(0, 0): ["digit 3 on a red background"], (1, 0): ["digit 3 on a red background"]}, "share digits"),
     ({(0, 0): ["digit 3 on a red background"], (0, 1): ["digit 2 on a red background"]}, "share color")],
)
def test_bad_prompts_raise(prompts, match):
    with pytest.raises(ValueError, match=match):
        RenderedDigitsProvider(prompts).sample({(0, 0): 1})


def test_bad_image_shape_raises():
    with pytest.raises(ValueError, match="RGB"):
        RenderedDigitsProvider().sample({(0, 0): 1}, image_shape=(1, 28, 28))


def test_style_shift_moves_images_away_from_real_digits_monotonically():
    from aimfair_plugin.datasets import make_colored_mnist

    real = make_colored_mnist(n_train=400, n_test=100, minority_share=0.5, image_size=32, random_state=0)
    counts = {(0, 0): 40, (0, 1): 40, (1, 0): 40, (1, 1): 40}
    plain = RenderedDigitsProvider().sample(counts, random_state=0)
    distances = []
    for g in (0.0, 0.5, 1.0, 1.5):
        X, y, s = RenderedDigitsProvider(style_shift=g).sample(counts, random_state=0)
        np.testing.assert_array_equal(y, plain[1])
        np.testing.assert_array_equal(s, plain[2])
        assert X.dtype == np.float32 and X.min() >= 0 and X.max() <= 1
        if g == 0:
            np.testing.assert_array_equal(X, plain[0])
        # per cell: distance between the mean synthetic image and the mean real image of that cell
        distances.append(np.mean([
            np.linalg.norm(X[(y == a) & (s == b)].mean(0) - real.X_train[(real.y_train == a) & (real.s_train == b)].mean(0))
            for a, b in counts]))
    assert np.all(np.diff(distances) > 0), distances
    with pytest.raises(ValueError, match="style_shift"):
        RenderedDigitsProvider(style_shift=3.0).sample(counts, random_state=0)
