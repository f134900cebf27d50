"""Contextual prompts for synthetic data (the paper's CSDG, Sec. 3.1 and supplementary).

A prompt for the cell ``(y, s)`` states the target value and the protected
value in words and varies everything else: other face attributes and head
poses for faces, font, weight, size, pose, stroke, blur and noise for digits.
The variation is what the paper credits for the gain over one plain prompt
(Table 5): a classifier trained on the synthetic images cannot lean on the
attributes the prompt leaves uncontrolled.
"""

import json
import os
import re
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

from .._io import atomic_write
from ..datasets import CELLS, binarize_target
from ._digit_styles import POSE_GROUPS, STYLE_GROUPS, digits_named, phrase_pattern

# Words for the value 0 and the value 1 of an attribute; the first of each list
# goes into template prompts, the others are accepted in an LLM's reply.
ATTRIBUTE_WORDS = {
    "smiling": (["not smiling", "unsmiling", "without a smile", "neutral expression", "serious expression"],
                ["smiling", "smile", "grinning"]),
    "male": (["female", "woman", "girl"], ["male", "man", "boy"]),
    "female": (["male", "man", "boy"], ["female", "woman", "girl"]),
    "young": (["old", "elderly", "older"], ["young", "youthful"]),
    "white": (["non-white", "not white"], ["white"]),
    "eyeglasses": (["no eyeglasses", "without eyeglasses"], ["eyeglasses", "glasses"]),
    "blond_hair": (["dark hair", "not blond"], ["blond hair", "blonde hair", "blond"]),
}
ATTRIBUTE_WORDS["gender"] = ATTRIBUTE_WORDS["female"]  # UTKFace gender: 0 male, 1 female

CELEBA_ATTRIBUTES = (
    "5 o'clock shadow", "arched eyebrows", "attractive", "bags under eyes", "bald", "bangs", "big lips",
    "big nose", "black hair", "blurry", "brown hair", "bushy eyebrows", "chubby", "double chin", "eyeglasses",
    "goatee", "grey hair", "heavy makeup", "high cheekbones", "mouth slightly open", "moustache", "narrow eyes",
    "no beard", "oval face", "pale skin", "pointy nose", "receding hairline", "rosy cheeks", "sideburns",
    "straight hair", "wavy hair", "wearing earrings", "wearing a hat", "wearing lipstick", "wearing necklace",
    "wearing necktie", "young",
)
UTKFACE_DETAILS = (
    "neutral expression", "laughing", "frowning", "surprised look", "calm expression", "slight smirk",
    "short hair", "long hair", "curly hair", "braided hair", "shaved head", "ponytail", "grey hair",
    "freckles", "dimples", "beard", "glasses", "earrings", "wrinkles", "tanned skin", "scar on the cheek",
)
HEAD_POSES = (
    "head turned slightly left", "head turned slightly right", "head tilted upward", "head facing slightly downward",
    "head tilted to the left", "head tilted to the right", "three-quarter view facing left",
    "three-quarter view facing right", "facing the camera directly", "chin raised slightly", "head lowered slightly",
)

FACE_TEMPLATE = "Portrait face photo of a {subject}, {details}."
DIGIT_TEMPLATE = "Image of the {subject}, {details}."

# The paper's instructions to GPT-4 (supplementary, "Details for Instructing LLM").
CELEBA_INSTRUCTION = (
    "Generate {number} diverse text prompts for human face attributes that always include {target} and "
    "{protected}. Each prompt should also consider some of the following attributes: {attributes}."
    "{poses} The prompts should be for a \"Portrait face photo of a,\" ensuring the image only contains the "
    "head part."
)
CELEBA_POSE_SENTENCE = (
    " Additionally, each prompt should include a variety of head poses, such as slight tilts, turns, and "
    "different head orientations (e.g., head turned slightly left, tilted upward, facing slightly downward) to "
    "ensure diversity in the generated image angles."
)
UTKFACE_INSTRUCTION = (
    "Generate {number} diverse text prompts for human face attributes that always include {target} and "
    "{protected}. Include details about facial expressions, hairstyles, and any other distinguishing features "
    "that can help in generating a realistic image. And also contain age start from 1 and end at 100.{poses} "
    "The prompts should be for a \"Portrait face photo of a,\" ensuring the image only contains the face part."
)
DIGIT_INSTRUCTION = (
    "Generate {number} diverse text prompts for images of a single digit that always include {target} and "
    "{protected}. Each prompt should also consider some of the following: {attributes}.{poses} Write one prompt "
    "per line, starting with \"Image of the digit\"."
)
DIGIT_POSE_SENTENCE = " Vary where the digit sits and its angle: {poses}."

DATASETS = ("celeba", "utkface", "digits")
PROMPT_FILE_VERSION = 1


def words_stated(text, words):
    """Which values (0 and/or 1) of a two-valued attribute a text states.

    ``words`` is ``(words_for_0, words_for_1)``. Longer phrases are matched and
    blanked out first, so "not smiling" does not also count as "smiling" and
    "non-white" not as "white".
    """
    text = text.lower()
    phrases = sorted(((w, v) for v in (0, 1) for w in words[v]), key=lambda pair: len(pair[0]), reverse=True)
    stated = set()
    for phrase, value in phrases:
        pattern = phrase_pattern(phrase)
        if pattern.search(text):
            stated.add(value)
            text = pattern.sub(" # ", text)
    return stated


def _attribute_words(spec, role):
    if isinstance(spec, str):
        key = spec.strip().lower().replace(" ", "_")
        if key not in ATTRIBUTE_WORDS:
            raise ValueError(
                f"Unknown {role} attribute {spec!r}; known: {sorted(ATTRIBUTE_WORDS)}. Pass a pair of words "
                "(word for 0, word for 1) instead, e.g. ('not smiling', 'smiling')."
            )
        return tuple(list(w) for w in ATTRIBUTE_WORDS[key])
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(w, str) and w.strip() for w in spec):
        if spec[0].strip().lower() == spec[1].strip().lower():
            raise ValueError(f"The two {role} words must differ, got {spec!r}.")
        return ([spec[0].strip()], [spec[1].strip()])
    raise ValueError(f"{role} must be an attribute name or a pair of words (for 0, for 1), got {spec!r}.")


def _digit_classes(target):
    labels = np.arange(10)
    binary = binarize_target(labels, target)
    return (labels[binary == 0].tolist(), labels[binary == 1].tolist())


def _join_digits(digits):
    return ", ".join(map(str, digits[:-1])) + f" or {digits[-1]}" if len(digits) > 1 else str(digits[0])


class ContextualPromptBuilder:
    """Prompts for each (y, s) cell that state y and s and vary everything else.

    Parameters
    ----------
    target, protected : str or (str, str)
        An attribute name ("Smiling", "Male", "Young", "White", "Female",
        "Gender", "Eyeglasses", "Blond_Hair") or a pair of words for the values
        0 and 1, e.g. ``("not smiling", "smiling")``. For ``dataset="digits"``
        the target is what :func:`~aimfair_plugin.datasets.make_colored_mnist`
        takes (an int threshold, or the digits of class 1) and ``protected`` is
        the pair of colours for s = 0 and s = 1, e.g. ``("red", "blue")``.
    n_prompts : int, default=50
        Distinct prompts per cell (the paper uses 50).
    dataset : {"celeba", "utkface", "digits"}, default="celeba"
        Which detail vocabulary and LLM instruction to use. CelebA details are
        the paper's list of CelebA attributes; UTKFace details are expressions,
        hair and features plus an age from 1 to 100; digit details are the
        font, weight, slant, size, stroke, blur and noise phrases the
        :class:`RenderedDigitsProvider` understands.
    head_poses : bool, default=True
        Add a head pose to each face prompt (for digits: an angle and a
        position), the last row of the paper's Table 5.
    template : str, optional
        Holds ``{subject}`` and ``{details}``. Default: the paper's
        ``"Portrait face photo of a {subject}, {details}."`` for faces and
        ``"Image of the {subject}, {details}."`` for digits.
    llm : callable str -> str, optional
        A language model (e.g. a transformers text-generation pipeline wrapped
        to return text, or a hosted-LLM client). It gets the paper's
        instruction for each cell; its reply is split into prompts, duplicates
        and prompts that do not state the cell's values are dropped, and
        template prompts fill the rest (with a warning saying how many).
    plain : bool, default=False
        One plain prompt per cell and no details: the paper's ablation.
    random_state : int, RandomState or None

    Examples
    --------
    >>> prompts = ContextualPromptBuilder("Smiling", "Male", n_prompts=2, random_state=0).build()
    >>> sorted(prompts)
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    >>> prompts[(1, 0)][0].startswith("Portrait face photo of a smiling female person")
    True
    """

    def __init__(
        self,
        target,
        protected,
        *,
        n_prompts=50,
        dataset="celeba",
        head_poses=True,
        template=None,
        llm=None,
        plain=False,
        random_state=None,
    ):
        self.target = target
        self.protected = protected
        self.n_prompts = n_prompts
        self.dataset = dataset
        self.head_poses = head_poses
        self.template = template
        self.llm = llm
        self.plain = plain
        self.random_state = random_state

    # -- validation and vocabulary -------------------------------------------------

    # target / protected are checked by _attribute (a name or a pair of words, per dataset)
    _parameter_constraints = {
        "n_prompts": [Interval(Integral, 1, None, closed="left")],
        "dataset": [StrOptions(set(DATASETS))],
        "head_poses": ["boolean"],
        "template": [None, str],
        "llm": [None, callable],
        "plain": ["boolean"],
        "random_state": ["random_state"],
    }

    def _validate(self):
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_parameter_constraints(self._parameter_constraints, params, caller_name=type(self).__name__)
        if "{subject}" not in self._template():
            raise InvalidParameterError(f"template must hold '{{subject}}', got {self.template!r}.")

    def _template(self):
        if self.template is not None:
            return self.template
        return DIGIT_TEMPLATE if self.dataset == "digits" else FACE_TEMPLATE

    def cell_words(self):
        """``(target_words, protected_words)``, each ``(words for 0, words for 1)``."""
        if self.dataset == "digits":
            classes = _digit_classes(self.target)
            target_words = tuple([f"digit {_join_digits(d)}"] for d in classes)
        else:
            target_words = _attribute_words(self.target, "target")
        return target_words, _attribute_words(self.protected, "protected")

    def _details(self, target_words, protected_words):
        """Detail phrases per group; phrases that would state a controlled attribute are left out."""

        def free(phrases):
            return [p for p in phrases if not words_stated(p, target_words) and not words_stated(p, protected_words)]

        if self.dataset == "digits":
            groups = {g: list(p) for g, p in STYLE_GROUPS.items() if g not in POSE_GROUPS}
            poses = {g: list(STYLE_GROUPS[g]) for g in POSE_GROUPS} if self.head_poses else {}
            return groups, poses
        vocabulary = CELEBA_ATTRIBUTES if self.dataset == "celeba" else UTKFACE_DETAILS
        groups = {"attributes": free(vocabulary)}
        age_controlled = any(words_stated(w, (["old"], ["young"])) for pair in (target_words, protected_words)
                             for w in pair[0] + pair[1])
        if self.dataset == "utkface" and not age_controlled:
            groups["age"] = [f"aged {age}" for age in range(1, 101)]
        return groups, ({"pose": list(HEAD_POSES)} if self.head_poses else {})

    def _subject(self, cell, target_words, protected_words, rng):
        y, s = cell
        if self.dataset == "digits":
            classes = _digit_classes(self.target)
            digit = classes[y] if self.plain else [classes[y][rng.randint(len(classes[y]))]]
            return f"digit {_join_digits(digit)} on a {protected_words[s][0]} background"
        return f"{target_words[y][0]} {protected_words[s][0]} person"

    def states_cell(self, prompt, cell):
        """Whether ``prompt`` states the cell's target and protected values and not the others."""
        target_words, protected_words = self.cell_words()
        y, s = cell
        if words_stated(prompt, protected_words) != {s}:
            return False
        if self.dataset == "digits":
            named = digits_named(prompt)
            return bool(named) and named <= set(_digit_classes(self.target)[y])
        return words_stated(prompt, target_words) == {y}

    # -- building --------------------------------------------------------------------

    def _template_prompts(self, cell, n, rng, exclude=()):
        target_words, protected_words = self.cell_words()
        template = self._template()
        if self.plain:
            plain = re.sub(r",?\s*\{details\}", "", template)
            return [plain.format(subject=self._subject(cell, target_words, protected_words, rng))][:n]
        groups, poses = self._details(target_words, protected_words)
        seen, prompts = {p.lower() for p in exclude}, []
        for _ in range(200 * n):
            if len(prompts) == n:
                break
            names = list(groups)
            if self.dataset == "celeba":
                details = list(rng.choice(groups["attributes"], size=rng.randint(2, 5), replace=False))
            elif self.dataset == "utkface":
                details = list(rng.choice(groups["attributes"], size=rng.randint(2, 4), replace=False))
                details += [groups["age"][rng.randint(len(groups["age"]))]] if "age" in groups else []
            else:
                chosen = rng.choice(names, size=rng.randint(3, len(names) + 1), replace=False)
                details = [groups[g][rng.randint(len(groups[g]))] for g in names if g in chosen]
            details += [poses[g][rng.randint(len(poses[g]))] for g in poses]
            prompt = template.format(
                subject=self._subject(cell, target_words, protected_words, rng), details=", ".join(details)
            )
            if prompt.lower() not in seen:
                seen.add(prompt.lower())
                prompts.append(prompt)
        if len(prompts) < n:
            raise ValueError(f"Could only make {len(prompts)} distinct prompts for cell {cell}; lower n_prompts.")
        return prompts

    def instruction(self, cell):
        """The paper's LLM instruction for one cell."""
        target_words, protected_words = self.cell_words()
        y, s = cell
        fill = dict(number=self.n_prompts, target=target_words[y][0], protected=protected_words[s][0])
        if self.dataset == "utkface":
            poses = CELEBA_POSE_SENTENCE if self.head_poses else ""
            return UTKFACE_INSTRUCTION.format(poses=poses, **fill)
        groups, poses = self._details(target_words, protected_words)
        attributes = ", ".join(p for phrases in groups.values() for p in phrases)
        if self.dataset == "celeba":
            return CELEBA_INSTRUCTION.format(
                attributes=attributes, poses=CELEBA_POSE_SENTENCE if self.head_poses else "", **fill
            )
        pose_text = DIGIT_POSE_SENTENCE.format(poses=", ".join(p for ps in poses.values() for p in ps)) if poses else ""
        return DIGIT_INSTRUCTION.format(attributes=attributes, poses=pose_text, **fill)

    def _llm_prompts(self, cell):
        reply = self.llm(self.instruction(cell))
        if not isinstance(reply, str):
            raise TypeError(f"llm must return a str, got {type(reply).__name__}.")
        prompts, seen = [], set()
        for line in reply.splitlines():
            text = re.sub(r"^\s*(?:[-*•]+|\(?\d+[.):]|prompt\s*\d*\s*:)\s*", "", line, flags=re.I)
            text = text.strip().strip("\"'“”`").strip()
            if len(text) < 10 or text.endswith(":") or text.lower() in seen:
                continue
            if self.states_cell(text, cell):
                seen.add(text.lower())
                prompts.append(text)
        return prompts[: self.n_prompts]

    def build(self):
        """``{(y, s): [prompt, ...]}`` for the four cells.

        ``n_prompts`` distinct prompts per cell (one when ``plain=True``).
        """
        self._validate()
        rng = check_random_state(self.random_state)
        prompts = {}
        for cell in CELLS:
            n = 1 if self.plain else self.n_prompts
            from_llm = self._llm_prompts(cell) if (self.llm is not None and not self.plain) else []
            if self.llm is not None and not self.plain and len(from_llm) < n:
                warnings.warn(
                    f"The LLM reply for cell (y={cell[0]}, s={cell[1]}) gave {len(from_llm)} usable prompts of "
                    f"{n}; {n - len(from_llm)} come from templates.",
                    UserWarning,
                    stacklevel=2,
                )
            prompts[cell] = from_llm + self._template_prompts(cell, n - len(from_llm), rng, exclude=from_llm)
        return prompts


class PlainPromptBuilder(ContextualPromptBuilder):
    """One plain prompt per cell, no details: the paper's "Plain Prompt (1)" ablation.

    Same parameters as :class:`ContextualPromptBuilder` except ``plain``,
    which is always True.

    Parameters
    ----------
    target, protected : str or (str, str)
        As :class:`ContextualPromptBuilder`'s.
    dataset : {"celeba", "utkface", "digits"}, default="celeba"
    template : str, optional
        As :class:`ContextualPromptBuilder`'s.

    Examples
    --------
    >>> from aimfair_plugin.synth import PlainPromptBuilder
    >>> PlainPromptBuilder('Smiling', 'Male').build()[(1, 0)]
    ['Portrait face photo of a smiling female person.']
    """

    def __init__(self, target, protected, *, dataset="celeba", template=None):
        super().__init__(target, protected, n_prompts=1, dataset=dataset, head_poses=False, template=template,
                         plain=True)


def check_prompts(prompts):
    """Validate a ``{(y, s): [str, ...]}`` dict; returns it with int tuple keys and list values."""
    if not isinstance(prompts, dict) or not prompts:
        raise ValueError(f"prompts must be a non-empty dict {{(y, s): [prompt, ...]}}, got {type(prompts).__name__}.")
    checked = {}
    for cell, texts in prompts.items():
        key = tuple(int(v) for v in cell) if isinstance(cell, (tuple, list)) else None
        if key not in CELLS:
            raise ValueError(f"prompt keys must be (y, s) pairs of 0/1, got {cell!r}.")
        if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"prompts[{key}] must be a non-empty list of non-empty strings.")
        checked[key] = list(texts)
    return checked


def resolve_prompts(prompts):
    """A prompt dict from a builder (built now), a dict, or a JSON file path."""
    if hasattr(prompts, "build"):
        return check_prompts(prompts.build())
    if isinstance(prompts, (str, os.PathLike)):
        return load_prompts(prompts)
    return check_prompts(prompts)


def save_prompts(prompts, path):
    """Write prompts to a JSON file a person can read and edit (keys ``"y_s"``).

    Parameters
    ----------
    prompts : dict of (int, int) to list of str
    path : str or Path

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile, os
    >>> from aimfair_plugin.synth import load_prompts, save_prompts
    >>> path = os.path.join(tempfile.mkdtemp(), 'prompts.json')
    >>> _ = save_prompts({(1, 0): ['a photo of a smiling woman']}, path)
    >>> load_prompts(path)
    {(1, 0): ['a photo of a smiling woman']}
    """
    prompts = check_prompts(prompts)
    payload = {"version": PROMPT_FILE_VERSION, "prompts": {f"{y}_{s}": prompts[(y, s)] for y, s in sorted(prompts)}}
    return atomic_write(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def load_prompts(path):
    """Read prompts written by :func:`save_prompts` (or edited by hand).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    prompts : dict of (int, int) to list of str

    Examples
    --------
    >>> import tempfile, os
    >>> from aimfair_plugin.synth import load_prompts, save_prompts
    >>> path = os.path.join(tempfile.mkdtemp(), 'prompts.json')
    >>> _ = save_prompts({(0, 1): ['a photo of a man, not smiling']}, path)
    >>> load_prompts(path)[(0, 1)]
    ['a photo of a man, not smiling']
    """
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Cannot read prompts from {path}: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("prompts"), dict):
        raise ValueError(f"{path} is not a prompt file: expected {{'prompts': {{'y_s': [...]}}}}.")
    cells = {}
    for key, texts in payload["prompts"].items():
        match = re.fullmatch(r"([01])_([01])", str(key))
        if not match:
            raise ValueError(f"{path}: prompt keys must look like '1_0' (y_s), got {key!r}.")
        cells[(int(match.group(1)), int(match.group(2)))] = texts
    return check_prompts(cells)

