"""Atomic writes: unique temporary files per call, so concurrent writers of one target never collide."""

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

from aimfair_plugin.utils import atomic_path, atomic_write


def _write(args):
    path, i = args
    atomic_write(path, f"writer {i} " * 1000)
    return i


def test_concurrent_threads_and_processes_leave_one_whole_file(tmp_path):
    target = tmp_path / "record.json"
    contents = {f"writer {i} " * 1000 for i in range(24)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(_write, [(target, i) for i in range(24)]))
    assert target.read_text() in contents  # one writer's whole text, never a mix
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_write, [(target, i) for i in range(8)])
    assert target.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left


def test_each_call_gets_its_own_temporary_file_and_a_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("a")
        second.write_text("b")
    assert target.read_text() == "a"  # the last to finish wins, whole
    try:
        with atomic_path(tmp_path / "failed.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    except RuntimeError:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
