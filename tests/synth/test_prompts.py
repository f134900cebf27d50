"""Contextual prompts: cell wording, variation, LLM parsing, plain ablation, prompt files."""

import json

import pytest

from aimfair_plugin.synth import ContextualPromptBuilder, PlainPromptBuilder, load_prompts, save_prompts
from aimfair_plugin.synth._digit_styles import digits_named, parse_style
from aimfair_plugin.synth._prompts import words_stated

CELLS = [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize(
    "target, protected, dataset",
    [("Smiling", "Male", "celeba"), ("Smiling", "Young", "celeba"), ("Female", "White", "utkface"),
     (5, ("red", "blue"), "digits"), ([1, 3, 5, 7, 9], ("red", "blue"), "digits")],
)
def test_each_cell_gets_distinct_prompts_stating_its_values(target, protected, dataset):
    builder = ContextualPromptBuilder(target, protected, n_prompts=30, dataset=dataset, random_state=0)
    prompts = builder.build()
    assert sorted(prompts) == CELLS
    for cell, texts in prompts.items():
        assert len(texts) == 30 and len({t.lower() for t in texts}) == 30
        assert all(builder.states_cell(t, cell) for t in texts)
        for other in CELLS:
            if other != cell:
                assert not any(builder.states_cell(t, other) for t in texts)


def test_words_stated_does_not_read_negations_as_the_positive_value():
    smiling = (["not smiling"], ["smiling"])
    assert words_stated("a not smiling man", smiling) == {0}
    assert words_stated("a smiling man", smiling) == {1}
    assert words_stated("a smiling and not smiling man", smiling) == {0, 1}
    white = (["non-white"], ["white"])
    assert words_stated("a non-white woman", white) == {0}
    assert words_stated("a white woman", white) == {1}
    assert words_stated("a female", (["female"], ["male"])) == {0}


def test_celeba_prompts_vary_attributes_and_head_poses_and_never_state_controlled_ones():
    builder = ContextualPromptBuilder("Smiling", "Young", n_prompts=50, random_state=0)
    texts = builder.build()[(1, 1)]
    details = {d.strip(" .") for t in texts for d in t.split(", ")[1:]}
    assert len(details) > 25  # many different CelebA attributes and poses appear
    assert any("head" in t or "view" in t for t in texts)
    # "young" is in the paper's attribute list but is the protected attribute here
    assert all(t.lower().count("young") == 1 for t in texts)
    no_pose = ContextualPromptBuilder("Smiling", "Young", n_prompts=20, head_poses=False, random_state=0).build()
    assert not any("head" in t or "view" in t for t in no_pose[(1, 1)])


def test_utkface_prompts_carry_ages_from_1_to_100():
    texts = ContextualPromptBuilder("Female", "White", n_prompts=50, dataset="utkface", random_state=0).build()
    ages = [int(t.split("aged ")[1].split(",")[0]) for cell in CELLS for t in texts[cell]]
    assert min(ages) >= 1 and max(ages) <= 100 and len(set(ages)) > 40


def test_same_seed_same_prompts_and_different_seed_different_prompts():
    a = ContextualPromptBuilder("Smiling", "Male", n_prompts=10, random_state=3).build()
    b = ContextualPromptBuilder("Smiling", "Male", n_prompts=10, random_state=3).build()
    c = ContextualPromptBuilder("Smiling", "Male", n_prompts=10, random_state=4).build()
    assert a == b and a != c


def test_plain_prompts_are_one_per_cell_without_details():
    prompts = PlainPromptBuilder("Smiling", "Male").build()
    assert prompts == {
        (0, 0): ["Portrait face photo of a not smiling female person."],
        (0, 1): ["Portrait face photo of a not smiling male person."],
        (1, 0): ["Portrait face photo of a smiling female person."],
        (1, 1): ["Portrait face photo of a smiling male person."],
    }
    digits = PlainPromptBuilder(5, ("red", "blue"), dataset="digits").build()
    assert digits[(1, 0)] == ["Image of the digit 5, 6, 7, 8 or 9 on a red background."]
    assert ContextualPromptBuilder("Smiling", "Male", plain=True).build() == prompts


def test_digit_prompts_parse_back_into_the_style_they_name():
    texts = ContextualPromptBuilder(5, ("red", "blue"), dataset="digits", n_prompts=50, random_state=0).build()
    fonts = set()
    for cell in CELLS:
        for t in texts[cell]:
            style = parse_style(t)
            fonts.add(style["font"])
            assert digits_named(t) <= (set(range(5)) if cell[0] == 0 else set(range(5, 10)))
    assert len(fonts) >= 6
    style = parse_style("digit 3, in a serif font, slightly blurred, rotated 15 degrees clockwise, shifted up")
    assert style["font"] == "serif" and style["blur"] == 0.6 and style["rotation"] == -15.0
    assert style["position"] == (0.0, -0.12) and style["size"] == 0.72  # unnamed group -> neutral
    assert digits_named("digit 3, rotated 5 degrees clockwise") == {3}
    assert digits_named("the digit seven") == {7}


MESSY_REPLY = """Sure! Here are some prompts:

1. "Portrait face photo of a smiling male person, wavy hair, head turned slightly left."
2) Portrait face photo of a smiling man with eyeglasses, tilted upward
- Portrait face photo of a smiling male person, wavy hair, head turned slightly left.
* Portrait face photo of a not smiling male person, bald.
3. Portrait face photo of a smiling female person, bangs.
4. Portrait face photo of a person with a hat.
Prompt 5: Portrait face photo of a grinning male, goatee, facing the camera directly.
Hope this helps:
"""


def test_llm_reply_is_parsed_deduplicated_filtered_and_topped_up():
    calls = []

    def fake_llm(instruction):
        calls.append(instruction)
        return MESSY_REPLY

    builder = ContextualPromptBuilder("Smiling", "Male", n_prompts=6, llm=fake_llm, random_state=0)
    with pytest.warns(UserWarning, match="gave 3 usable prompts of 6"):
        prompts = builder.build()
    assert len(calls) == 4
    assert "always include smiling and male" in calls[3]
    assert "5 o'clock shadow" in calls[3] and "head turned slightly left" in calls[3]
    assert prompts[(1, 1)][:3] == [
        "Portrait face photo of a smiling male person, wavy hair, head turned slightly left.",
        "Portrait face photo of a smiling man with eyeglasses, tilted upward",
        "Portrait face photo of a grinning male, goatee, facing the camera directly.",
    ]
    assert len(prompts[(1, 1)]) == 6 and len(set(prompts[(1, 1)])) == 6
    # the reply states smiling, so cell (0, 1) keeps only its one "not smiling male" line
    assert prompts[(0, 1)][0] == "Portrait face photo of a not smiling male person, bald."


def test_llm_must_return_text():
    with pytest.raises(TypeError, match="must return a str"):
        ContextualPromptBuilder("Smiling", "Male", llm=lambda text: None).build()


def test_prompt_file_round_trip_and_hand_edits(tmp_path):
    prompts = ContextualPromptBuilder("Smiling", "Male", n_prompts=3, random_state=0).build()
    path = save_prompts(prompts, tmp_path / "prompts.json")
    payload = json.loads(path.read_text())
    assert sorted(payload["prompts"]) == ["0_0", "0_1", "1_0", "1_1"]
    assert load_prompts(path) == prompts
    payload["prompts"]["1_1"][0] = "An edited prompt of a smiling male person."
    path.write_text(json.dumps(payload))
    assert load_prompts(path)[(1, 1)][0] == "An edited prompt of a smiling male person."


@pytest.mark.parametrize(
    "content, match",
    [("not json", "Cannot read"), ('{"x": 1}', "not a prompt file"), ('{"prompts": {"2_0": ["a"]}}', "y_s"),
     ('{"prompts": {"1_0": []}}', "non-empty list")],
)
def test_bad_prompt_files_raise(tmp_path, content, match):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_prompts(path)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(target="Height", protected="Male"), "Unknown target"),
     (dict(target=("a", "a"), protected="Male"), "must differ"),
     (dict(target="Smiling", protected="Male", n_prompts=0), "n_prompts"),
     (dict(target="Smiling", protected="Male", dataset="faces"), "dataset"),
     (dict(target="Smiling", protected="Male", template="no subject"), "subject"),
     (dict(target="Smiling", protected="Male", llm="gpt-4"), "callable"),
     (dict(target=10, protected=("red", "blue"), dataset="digits"), "one class empty")],
)
def test_bad_builder_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextualPromptBuilder(**kwargs).build()
