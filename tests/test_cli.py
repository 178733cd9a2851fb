"""The ``npebm`` command: the demo samples and reports; bad arguments exit 2."""
import numpy as np
import pytest

from npebm.__main__ import main


def test_demo_samples_and_writes_results(tmp_path, capsys):
    out = tmp_path / "demo.npz"
    assert main(["demo", "--n-samples", "300", "--n-steps", "60", "--grid", "11",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("langevin", "mala", "hmc", "hmc samples over"):
        assert name in text
    with np.load(out) as data:
        for name in ("langevin", "mala", "hmc"):
            assert data[name].shape == (300, 2) and np.isfinite(data[name]).all()
        assert data["grid_energy"].shape == (11, 11)


@pytest.mark.parametrize("argv", [["demo", "--n-samples", "0"], ["demo", "--seed", "-1"],
                                  ["demo", "--n-steps", "many"], ["nope"]])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("npebm") and "error" in err[-1]
