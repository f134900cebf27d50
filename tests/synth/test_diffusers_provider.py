"""DiffusersProvider end to end on the tiny offline pipeline: generate, cache hit, interruption, resume."""

import copy
import json
import pickle

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from aimfair_plugin.datasets import read_images
from aimfair_plugin.synth import ContextualPromptBuilder, DiffusersProvider
from aimfair_plugin.synth._diffusers import image_seed
from aimfair_plugin.synth.generate import main as generate_main

COUNTS = {(0, 0): 3, (1, 1): 3}
PROMPTS = ContextualPromptBuilder("Smiling", "Male", n_prompts=2, random_state=0).build()


def _provider(path, cache, **kwargs):
    params = dict(cache_dir=cache, num_inference_steps=2, batch_size=2, image_size=16, verbose=0)
    return DiffusersProvider(path, PROMPTS, **{**params, **kwargs})


@pytest.fixture(scope="module")
def reference(tiny_pipeline_path, tmp_path_factory):
    """Images of an uninterrupted run, in cache order (cell, index)."""
    provider = _provider(tiny_pipeline_path, tmp_path_factory.mktemp("reference"))
    assert provider.generate(COUNTS) == 6
    return _cached(provider)


def _cached(provider):
    from aimfair_plugin.datasets import read_image

    root = provider.cache_dir
    return np.stack([read_image(root / f"{y}_{s}" / f"{i:05d}.png") for (y, s) in COUNTS for i in range(3)])


def test_generates_browsable_cache_with_manifest(tiny_pipeline_path, tmp_path):
    provider = _provider(tiny_pipeline_path, tmp_path / "c")
    X, y, s = provider.sample(COUNTS, random_state=0)
    assert X.shape == (6,) and read_images(X, image_size=16).shape == (6, 3, 16, 16)
    assert y.tolist() == [0, 0, 0, 1, 1, 1] and s.tolist() == [0, 0, 0, 1, 1, 1]
    files = sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*"))
    assert files == [
        "0_0", "0_0/00000.png", "0_0/00001.png", "0_0/00002.png", "0_0/manifest.jsonl",
        "1_1", "1_1/00000.png", "1_1/00001.png", "1_1/00002.png", "1_1/manifest.jsonl", "settings.json",
    ]
    records = [json.loads(line) for line in (tmp_path / "c" / "1_1" / "manifest.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in records] == [PROMPTS[(1, 1)][0], PROMPTS[(1, 1)][1], PROMPTS[(1, 1)][0]]
    assert [r["image_seed"] for r in records] == [image_seed(0, (1, 1), i) for i in range(3)]
    assert records[0]["settings"]["num_inference_steps"] == 2 and records[0]["dtype"] == "float32"
    settings = json.loads((tmp_path / "c" / "settings.json").read_text())
    assert settings["model"] == str(tiny_pipeline_path) and settings["guidance_scale"] == 9.0


def test_cache_hit_needs_no_model(tiny_pipeline_path, tmp_path, monkeypatch):
    first = _provider(tiny_pipeline_path, tmp_path / "c").sample(COUNTS, random_state=0)

    def no_loading(*args, **kwargs):
        raise AssertionError("a complete cache must not load the model")

    import diffusers

    monkeypatch.setattr(diffusers.AutoPipelineForText2Image, "from_pretrained", no_loading)
    again = _provider(tiny_pipeline_path, tmp_path / "c", image_size=8).sample(COUNTS, random_state=0)
    assert read_images(again[0], image_size=8).shape == (6, 3, 8, 8)
    np.testing.assert_array_equal(_provider(tiny_pipeline_path, tmp_path / "c").sample(COUNTS, random_state=0)[0],
                                  first[0])


def test_interrupted_run_resumes_and_loses_nothing(tiny_pipeline_path, tmp_path, monkeypatch, reference):
    cache = tmp_path / "c"
    original = StableDiffusionPipeline.__call__
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _provider(tiny_pipeline_path, cache).sample(COUNTS)
    monkeypatch.setattr(StableDiffusionPipeline, "__call__", original)
    assert sorted(p.name for p in (cache / "0_0").glob("*.png")) == ["00000.png", "00001.png"]
    # what a kill in the middle of a write leaves behind: a torn manifest line and a temporary file
    with open(cache / "0_0" / "manifest.jsonl", "a") as fh:
        fh.write('{"file": "00002.png", "prom')
    (cache / "0_0" / ".00002.png.999.tmp").write_bytes(b"partial")

    provider = _provider(tiny_pipeline_path, cache)
    assert provider.missing(COUNTS) == [((0, 0), 2), ((1, 1), 0), ((1, 1), 1), ((1, 1), 2)]
    assert provider.generate(COUNTS) == 4
    assert provider.generate(COUNTS) == 0
    np.testing.assert_allclose(_cached(provider), reference, atol=2 / 255)


def test_truncated_image_is_detected_and_regenerated(tiny_pipeline_path, tmp_path, reference):
    provider = _provider(tiny_pipeline_path, tmp_path / "c")
    provider.generate(COUNTS)
    path = tmp_path / "c" / "1_1" / "00001.png"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert provider.missing(COUNTS) == [((1, 1), 1)]
    assert provider.generate(COUNTS) == 1
    np.testing.assert_allclose(_cached(provider), reference, atol=2 / 255)
    # sample checks every file it returns (without decoding it) and repairs what fails there too
    other = tmp_path / "c" / "0_0" / "00002.png"
    other.write_bytes(other.read_bytes()[:100])
    X, y, s = provider.sample(COUNTS, image_shape=(3, 32, 32), random_state=0)
    assert read_images(X, image_size=32).shape == (6, 3, 32, 32) and provider.missing(COUNTS) == []
    np.testing.assert_allclose(_cached(provider), reference, atol=2 / 255)


def test_other_settings_are_refused_and_edited_prompts_regenerate(tiny_pipeline_path, tmp_path):
    _provider(tiny_pipeline_path, tmp_path / "c").generate(COUNTS)
    with pytest.raises(ValueError, match="different settings.*num_inference_steps: cache has 2, this provider 3"):
        _provider(tiny_pipeline_path, tmp_path / "c", num_inference_steps=3).sample(COUNTS)
    with pytest.raises(ValueError, match="different settings.*seed"):
        _provider(tiny_pipeline_path, tmp_path / "c", random_state=1).generate(COUNTS)
    assert _provider(tiny_pipeline_path, tmp_path / "c", random_state=0).missing(COUNTS) == []
    with pytest.raises(ValueError, match="num_inference_steps"):
        _provider(tiny_pipeline_path, tmp_path / "c", num_inference_steps=0).missing(COUNTS)
    edited = {cell: list(texts) for cell, texts in PROMPTS.items()}
    edited[(1, 1)][1] = "Portrait face photo of a smiling male person, bald."
    provider = DiffusersProvider(tiny_pipeline_path, edited, cache_dir=tmp_path / "c", num_inference_steps=2,
                                 batch_size=2, verbose=0)
    assert provider.missing(COUNTS) == [((1, 1), 1)]


def test_processes_split_the_work_and_write_their_own_shards(tiny_pipeline_path, tmp_path, monkeypatch, reference):
    class FakeState:
        num_processes, device, waited = 2, "cpu", 0

        def __init__(self, rank):
            self.process_index = rank

        def wait_for_everyone(self):
            FakeState.waited += 1

    cache = tmp_path / "c"
    made = []
    for rank in (0, 1):
        monkeypatch.setattr(DiffusersProvider, "_distributed_state", staticmethod(lambda rank=rank: FakeState(rank)))
        made.append(_provider(tiny_pipeline_path, cache).generate(COUNTS))
    assert made == [3, 3] and FakeState.waited == 2
    assert sorted(p.name for p in (cache / "0_0").glob("manifest*")) == ["manifest.rank0.jsonl", "manifest.rank1.jsonl"]
    monkeypatch.undo()
    provider = _provider(tiny_pipeline_path, cache)
    assert provider.missing(COUNTS) == []
    np.testing.assert_allclose(_cached(provider), reference, atol=2 / 255)


def test_pipeline_object_is_used_and_shared_by_copies(tiny_pipeline_path, tmp_path):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_path)
    provider = DiffusersProvider(pipe, PROMPTS, cache_dir=tmp_path / "c", num_inference_steps=2, verbose=0)
    X, _, _ = provider.sample({(0, 1): 2}, image_shape=(3, 12, 12))
    assert read_images(X, image_size=12).shape == (2, 3, 12, 12)
    assert json.loads((tmp_path / "c" / "settings.json").read_text())["scheduler"] == "DDIMScheduler"
    twin = copy.deepcopy(provider)
    assert twin.pipeline is pipe and twin.prompts == provider.prompts and twin.prompts is not provider.prompts
    by_path = _provider(tiny_pipeline_path, tmp_path / "d")
    by_path.generate({(0, 1): 1})
    assert "_loaded_pipeline" not in pickle.loads(pickle.dumps(by_path)).__dict__


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(batch_size=0), "batch_size"), (dict(num_inference_steps=1.5), "num_inference_steps"),
     (dict(dtype="int8"), "dtype"), (dict(generation_size=3), "generation_size")],
)
def test_bad_parameters_raise_before_generating(tiny_pipeline_path, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _provider(tiny_pipeline_path, tmp_path / "c", **kwargs).sample(COUNTS)


def test_command_line_fills_a_cache(tiny_pipeline_path, tmp_path, capsys):
    cache = tmp_path / "cli"
    made = generate_main([str(tiny_pipeline_path), "--cache-dir", str(cache), "--per-cell", "2", "--target",
                          "Smiling", "--protected", "Male", "--n-prompts", "3", "--steps", "2"])
    assert made == 8 and len(list(cache.glob("*_*/*.png"))) == 8
    assert "Generated 8 images" in capsys.readouterr().out
    again = generate_main([str(tiny_pipeline_path), "--cache-dir", str(cache), "--per-cell", "2", "--prompts",
                           str(cache / "prompts.json"), "--steps", "2"])
    assert again == 0
