"""The run folder's machinery: job claims, whole-or-nothing writes."""
import errno
import os

import pytest

import config
import runner


def test_a_claimed_job_cannot_be_claimed_again_until_released(tmp_path):
    os.makedirs(tmp_path / "jobs")
    first = runner.claim(str(tmp_path), "src", 0)
    assert first is not None and runner.claim(str(tmp_path), "src", 0) is None   # another open file: refused
    other = runner.claim(str(tmp_path), "src", 1)
    assert other is not None
    os.close(first)
    again = runner.claim(str(tmp_path), "src", 0)
    assert again is not None
    os.close(again), os.close(other)


def test_a_folder_where_a_lock_goes_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "INTERACTIVE", False)
    os.makedirs(tmp_path / "jobs" / "src-seed0.lock")
    with pytest.raises(SystemExit) as stop:
        runner.claim(str(tmp_path), "src", 0)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "src-seed0.lock cannot be used as the job's lock" in err


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "INTERACTIVE", False)
    path = tmp_path / "summary.csv"

    def full_disk(tmp):
        with open(tmp, "w") as f:
            f.write("half a tab")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SystemExit) as stop:
        runner.write_atomic(str(path), full_disk)
    assert stop.value.code == 2 and os.listdir(tmp_path) == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write {path} (No space left on device)" in err
    runner.write_text(str(path), "whole\n")
    assert path.read_text() == "whole\n" and os.listdir(tmp_path) == ["summary.csv"]


def test_a_damaged_job_is_noticed_and_not_taken_for_done(tmp_path, capsys):
    os.makedirs(tmp_path / "jobs")
    (tmp_path / "jobs" / "src-seed0.json").write_text("")
    assert not runner.job_done(str(tmp_path), "src", 0)
    assert "src-seed0.json or .npz is damaged (JSONDecodeError)" in capsys.readouterr().out
    assert not runner.job_done(str(tmp_path), "src", 0, notice=False) and capsys.readouterr().out == ""


def test_a_stopped_write_leaves_no_partial_file(tmp_path):
    def stopped(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        runner.write_atomic(str(tmp_path / "x.json"), stopped)
    assert os.listdir(tmp_path) == []
