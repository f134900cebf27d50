"""The words a digit prompt may use, and what each means to the renderer.

Shared by the prompt builder (which writes these phrases into contextual
prompts) and :class:`RenderedDigitsProvider` (which reads them back), so the
two can never disagree. Each group maps a phrase to a rendering value; a
prompt that names no phrase of a group gets the group's neutral value, which
is what a plain prompt gets for every group.
"""

import re

# Font files: matplotlib's bundled TTFs (regular, bold). "default" is Pillow's
# built-in scalable font, the one a plain prompt gets.
FONT_FILES = {
    "sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "monospace": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
    "stix": ("STIXGeneral.ttf", "STIXGeneralBol.ttf"),
    "roman": ("cmr10.ttf", "cmb10.ttf"),
    "typewriter": ("cmtt10.ttf", None),
    "geometric": ("cmss10.ttf", None),
    "default": (None, None),
}

STYLE_GROUPS = {
    "font": {
        "in a sans-serif font": "sans",
        "in a serif font": "serif",
        "in a monospace font": "monospace",
        "in a STIX font": "stix",
        "in a Computer Modern roman font": "roman",
        "in a typewriter font": "typewriter",
        "in a geometric sans font": "geometric",
    },
    "weight": {"bold": True, "regular weight": False},
    "slant": {"italic": 0.25, "non-italic": 0.0},
    "size": {"small": 0.55, "medium-sized": 0.72, "large": 0.88},
    "stroke": {"with thin strokes": -1, "with normal strokes": 0, "with thick strokes": 1, "with very thick strokes": 2},
    "blur": {"sharp": 0.0, "slightly blurred": 0.6, "blurred": 1.1},
    "noise": {"clean": 0.0, "with light noise": 0.04, "with heavy noise": 0.1},
    # The digit analogue of the paper's head poses: where and at what angle it sits.
    "rotation": {
        "upright": 0.0,
        "rotated slightly clockwise": -10.0,
        "rotated clockwise": -22.0,
        "rotated slightly counterclockwise": 10.0,
        "rotated counterclockwise": 22.0,
    },
    "position": {
        "centred": (0.0, 0.0),
        "shifted left": (-0.12, 0.0),
        "shifted right": (0.12, 0.0),
        "shifted up": (0.0, -0.12),
        "shifted down": (0.0, 0.12),
    },
}
POSE_GROUPS = ("rotation", "position")
NEUTRAL = {
    "font": "default",
    "weight": False,
    "slant": 0.0,
    "size": 0.72,
    "stroke": 0,
    "blur": 0.0,
    "noise": 0.0,
    "rotation": 0.0,
    "position": (0.0, 0.0),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_DEGREES = re.compile(r"rotated (\d{1,2}(?:\.\d+)?) degrees? (counter-?clockwise|anticlockwise|clockwise)")


def phrase_pattern(phrase):
    """A regex matching ``phrase`` as a whole phrase (so "not smiling" never matches inside a longer word)."""
    return re.compile(r"(?<![\w-])" + re.escape(phrase.lower()) + r"(?![\w-])")


def parse_style(prompt):
    """Rendering values named by a prompt, the neutral value for each group it does not name.

    Within a group the longest matching phrase wins ("slightly blurred" over
    "blurred"); "rotated N degrees clockwise" gives any angle up to 99 degrees.
    """
    text = prompt.lower()
    style = dict(NEUTRAL)
    for group, phrases in STYLE_GROUPS.items():
        for phrase in sorted(phrases, key=len, reverse=True):
            if phrase_pattern(phrase).search(text):
                style[group] = phrases[phrase]
                break
    match = _DEGREES.search(text)
    if match:
        angle = float(match.group(1))
        style["rotation"] = -angle if match.group(2) == "clockwise" else angle
    return style


def digits_named(prompt):
    """The set of digits a prompt names, as numerals ("7") or words ("seven")."""
    text = prompt.lower()
    found = {int(d) for d in re.findall(r"(?<![\w.])(\d)(?![\w.])(?!\s*degree)", text)}
    found |= {i for i, word in enumerate(DIGIT_WORDS) if phrase_pattern(word).search(text)}
    return found
