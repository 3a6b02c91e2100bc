"""The `tfrs-kit` command: the demo end to end, and clear errors."""

import pytest

from tfrs_kit.cli import main


def test_demo_on_synthetic_data_prints_an_evaluation_and_recommendations(capsys, tmp_path):
    assert main(["demo", "--size", "3000", "--epochs", "2", "--quiet",
                 "--export", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "EVAL two-tower recall@10=" in out
    assert "Top-3 recommendations for user" in out
    assert out.count("(score ") == 3
    assert (tmp_path / "index" / "tfrs_kit_index.json").is_file()


def test_missing_data_dir_is_a_clear_error(capsys, tmp_path):
    assert main(["demo", "--dataset", "movielens-100k", "--data-dir", str(tmp_path)]) == 2
    assert "tfrs-kit: error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--dataset", "nope"], []])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage: tfrs-kit" in capsys.readouterr().err
