"""The Diagnostics record: access by key and attribute, TorchEBM's stacked layout, summary."""
import numpy as np
import pytest

import npebm
from npebm.diagnostics import Diagnostics


@pytest.fixture
def record():
    rng = np.random.default_rng(0)
    n_kept, n_samples, dim = 5, 4, 3
    return Diagnostics(
        energy=rng.normal(size=(n_kept, n_samples)),
        acceptance_rate=rng.uniform(size=n_kept),
        mean=rng.normal(size=(n_kept, dim)),
        var=rng.uniform(size=(n_kept, dim)),
        grad_norm=rng.uniform(size=(n_kept, n_samples)),
        step_size=np.linspace(0.1, 0.05, n_kept),
        divergences=np.array([0, 2, 0, 1]),
    )


def test_key_and_attribute_access(record):
    assert record["energy"] is record.energy
    assert set(record) == {"energy", "acceptance_rate", "mean", "var", "grad_norm",
                           "step_size", "divergences"}
    assert len(record) == 7 and "step_size" in dir(record)
    with pytest.raises(KeyError, match="no diagnostic 'ess'.*recorded"):
        record["ess"]
    with pytest.raises(AttributeError, match="no diagnostic 'ess'"):
        record.ess


def test_stacked_is_torchebm_layout(record):
    s = record.stacked()
    assert s.shape == (5, 4, 4, 3)
    for t in range(5):
        for c in range(4):
            np.testing.assert_array_equal(s[t, 0, c], record.mean[t])
            np.testing.assert_array_equal(s[t, 1, c], record.var[t])
            np.testing.assert_array_equal(s[t, 2, c], np.full(3, record.energy[t, c]))
            np.testing.assert_array_equal(s[t, 3, c], np.full(3, record.acceptance_rate[t]))


def test_summary(record):
    s = record.summary()
    assert s["n_kept"] == 5
    assert s["final_energy_mean"] == pytest.approx(np.mean(record.energy[-1]))
    assert s["acceptance_rate"] == pytest.approx(np.mean(record.acceptance_rate))
    assert s["final_step_size"] == pytest.approx(0.05)
    assert s["grad_norm_mean"] == pytest.approx(np.mean(record.grad_norm))
    assert s["divergences"] == 3
    assert all(isinstance(v, (int, float)) for v in s.values())


def test_summary_of_a_run_that_kept_nothing():
    empty = Diagnostics(energy=np.zeros((0, 2)), divergences=np.zeros(2, int))
    assert empty.summary() == {"n_kept": 0, "divergences": 0}


def test_to_numpy_and_repr(record):
    home = npebm.to_numpy(record)
    assert isinstance(home, Diagnostics) and home["mean"] is not None
    assert repr(record).startswith("Diagnostics(energy(5, 4), acceptance_rate(5,)")
