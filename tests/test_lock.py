"""The run directory lock: re-entrant in a process, exclusive across processes, released on any exit."""
import contextlib
import json
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import mftma
from mftma import run_lock
from mftma.errors import DataFileError
from mftma.run_lock import LOCK_FILE, run_directory_lock

pytestmark = pytest.mark.skipif(run_lock.fcntl is None, reason="no fcntl: run directories are not locked")

HOLDER = textwrap.dedent("""
    import sys, time
    from mftma.run_lock import run_directory_lock
    with run_directory_lock(sys.argv[1], sys.argv[2]):
        print("locked", flush=True)
        if sys.argv[3] == "sleep":
            time.sleep(600)
""")


def _start_holder(run_dir, activity="training", then="sleep") -> subprocess.Popen:
    """A python process that holds ``run_dir``'s lock (and sleeps, or exits at once)."""
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(mftma.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), activity, then],
                               stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "locked"
    return process


@contextlib.contextmanager
def _holder(run_dir, activity="training"):
    process = _start_holder(run_dir, activity)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


def _is_free(run_dir) -> bool:
    try:
        with run_directory_lock(run_dir, "checking"):
            return True
    except DataFileError:
        return False


def test_reentrant_within_a_process_and_described_while_held(tmp_path):
    with run_directory_lock(tmp_path, "training"):
        description = json.loads((tmp_path / LOCK_FILE).read_text())
        with run_directory_lock(tmp_path, "activation caching"), \
                run_directory_lock(f"{tmp_path}/./", "analysis"):  # another spelling, same directory
            pass
        assert (tmp_path / LOCK_FILE).exists()
    assert description["activity"] == "training" and description["pid"] == os.getpid()
    assert {"host", "since"} <= description.keys()
    assert not (tmp_path / LOCK_FILE).exists()
    assert not run_lock._held


def test_released_after_an_error_in_the_block(tmp_path):
    with pytest.raises(KeyError), run_directory_lock(tmp_path, "training"):
        raise KeyError("boom")
    assert not run_lock._held and not (tmp_path / LOCK_FILE).exists()


def test_another_process_gets_a_clear_error_naming_the_holder(tmp_path):
    with _holder(tmp_path, "training") as holder:
        expected = rf"in use by training \(pid {holder.pid} on host .*, since "
        with pytest.raises(DataFileError, match=expected) as error, run_directory_lock(tmp_path, "analysis"):
            pass
        assert str(tmp_path) in str(error.value) and "choose another directory" in str(error.value)
        assert (tmp_path / LOCK_FILE).exists()  # the holder's file is left alone
    assert not run_lock._held


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_released_when_the_holder_ends(tmp_path, how):
    if how == "exit":
        holder = _start_holder(tmp_path, then="exit")
        assert holder.wait(timeout=30) == 0
        assert not (tmp_path / LOCK_FILE).exists()  # a clean exit removes the file
    else:
        holder = _start_holder(tmp_path)
        assert not _is_free(tmp_path)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
        assert (tmp_path / LOCK_FILE).exists()  # a leftover file, but no lock
    assert _is_free(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()


def test_different_directories_do_not_block_each_other(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    with _holder(first):
        assert _is_free(second)
        assert not _is_free(first)


def test_missing_directory_is_created_only_when_asked(tmp_path):
    with run_directory_lock(tmp_path / "absent", "analysis"):
        assert not (tmp_path / "absent").exists()
    with run_directory_lock(tmp_path / "new" / "run", "training", create=True):
        assert (tmp_path / "new" / "run" / LOCK_FILE).exists()


def test_threads_share_the_process_lock(tmp_path):
    errors = []

    def nest():
        try:
            for _ in range(50):
                with run_directory_lock(tmp_path, "training"), run_directory_lock(tmp_path, "analysis"):
                    pass
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=nest) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not run_lock._held and not (tmp_path / LOCK_FILE).exists()


def _try_lock(run_dir, queue):
    queue.put(_is_free(run_dir))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_inherit_the_lock(tmp_path):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with run_directory_lock(tmp_path, "training"):
        child = context.Process(target=_try_lock, args=(tmp_path, queue))
        child.start()
        child.join(timeout=60)
        assert queue.get(timeout=10) is False  # the parent's lock excludes the child
        assert (tmp_path / LOCK_FILE).exists()
    assert _is_free(tmp_path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    config = load_config("tiny").replace(training={"epochs": 1})
    return config, train(config, tmp_path_factory.mktemp("lock") / "run", progress=False)


def test_writers_refuse_a_run_directory_held_by_another_process(tiny_run):
    from mftma.cache.writer import cache_activations
    from mftma.experiments.training import train
    from mftma.pipeline.analyze import analyze_run
    from mftma.pipeline.rollback import rollback

    config, run = tiny_run
    def files():
        return {path: path.stat().st_mtime_ns for path in run.path.rglob("*") if path.name != LOCK_FILE}

    before = files()
    with _holder(run.path, "training") as holder:
        holder_text = rf"in use by training \(pid {holder.pid} "
        for write in (lambda: train(config, run.path, progress=False),
                      lambda: cache_activations(run, progress=False),
                      lambda: analyze_run(run.path, progress=False),
                      lambda: rollback(run)):
            with pytest.raises(DataFileError, match=holder_text):
                write()
    assert files() == before  # nothing was written


def test_cli_prints_the_holder_without_a_traceback(tiny_run, capsys):
    from mftma.cli import main

    _, run = tiny_run
    with _holder(run.path, "activation caching") as holder:
        assert main(["train", "tiny", "--n-epochs", "1", "--out", str(run.path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"in use by activation caching (pid {holder.pid}" in err and "Traceback" not in err


def test_training_resumes_after_a_killed_holder_left_its_lock_file(tmp_path):
    from mftma.experiments.config import load_config
    from mftma.experiments.training import train

    (tmp_path / "run").mkdir()
    holder = _start_holder(tmp_path / "run")
    holder.kill()
    holder.wait(timeout=30)
    assert [path.name for path in (tmp_path / "run").iterdir()] == [LOCK_FILE]
    run = train(load_config("tiny").replace(training={"epochs": 1}), tmp_path / "run", progress=False)
    assert run.checkpoint_epochs() == [0, 1]
    assert not (run.path / LOCK_FILE).exists()
