"""Benchmark methods carry their behaviour: adding one is one ``Method`` entry; jobs are frozen dataclasses."""

import dataclasses
import json

import pytest
from test_runner import toy_suite

from aimfair_bench.methods import METHODS, Method, fit_baseline, register_method, table_methods
from aimfair_bench.plots import method_style
from aimfair_bench.report import markdown_report, records_frame
from aimfair_bench.runner import Job, collect_records, make_jobs, run_jobs, settings_hash
from aimfair_plugin.estimators import ImageClassifier


@pytest.fixture
def toy_method():
    method = register_method("toy", Method("Toy ERM (lr 0.02)", fit_baseline, ImageClassifier, {"lr": 0.02},
                                           cost=0.5, tables={"1": 9}, style={"marker": "s", "color": "black"}))
    yield method
    METHODS.pop("toy")


@pytest.mark.slow
def test_a_registered_method_runs_is_reported_and_plotted(toy_method, tmp_path):
    jobs = make_jobs(toy_suite(methods=("erm", "toy")))
    assert [j.method for j in jobs] == ["erm", "toy"] and jobs[1].params["lr"] == 0.02
    assert run_jobs(jobs, tmp_path, progress=False) == 2
    records = collect_records(tmp_path, jobs)
    toy = next(r for r in records if r["method"] == "toy")
    assert toy["method_name"] == "Toy ERM (lr 0.02)" and toy["group_labels"] == "none"
    assert toy["settings"]["params"]["lr"] == 0.02 and toy["settings"]["finetune"] is None
    report = markdown_report(records_frame(records), "toy")
    assert "| Toy ERM (lr 0.02)" in report  # in Table 1 (its declared row) and in the all-runs table
    assert table_methods("1")[-1] == "toy"
    assert method_style("toy")["marker"] == "s"


def test_register_method_refuses_duplicates_and_non_methods(toy_method):
    with pytest.raises(ValueError, match="already registered"):
        register_method("toy", toy_method)
    with pytest.raises(TypeError):
        register_method("other", {"label": "x"})


def test_the_runner_and_report_read_fields_not_names():
    assert table_methods("1") == ["erm", "cvar_dro", "lff", "jtt", "fairif", "aimfair", "group_dro"]
    assert table_methods("3") == ["erm", "synthetic_only", "supplementation", "linear_probe", "full", "aimfair"]
    assert table_methods("4") == ["random", "update_block", "freeze_block", "cosine", "aimfair"]
    starts = {k for k, m in METHODS.items() if m.starts_from_erm}
    assert {"fairif", "random_matched", "full", "aimfair", "auto_rgn"} <= starts and "jtt" not in starts
    assert {k for k, m in METHODS.items() if m.group_labels != "none"} == {"fairif", "group_dro", "normalized_guarded"}


def test_jobs_are_frozen_and_their_settings_are_plain_and_hashed():
    job = make_jobs(toy_suite(methods=("aimfair",)))[0]
    assert isinstance(job, Job)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.seed = 3
    settings = job.to_settings()
    assert json.loads(json.dumps(settings)) == settings
    assert job.settings_hash == settings_hash(settings)
    assert set(settings) == {"task", "method", "params", "seed", "recipe", "finetune", "device", "checkpoints"}
    assert dataclasses.replace(job, seed=1).settings_hash != job.settings_hash
    # what the checkpoints depend on is a setting: a record made without them (or another subset) is redone
    assert dataclasses.replace(job, checkpoint_bn_images=100).settings_hash != job.settings_hash
    assert dataclasses.replace(job, variant="shown only").settings_hash == job.settings_hash
