"""Properties of every sampler over random shapes, dtypes, seeds and run splits."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npebm.energies import DoubleWellEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

ENERGY = DoubleWellEnergy(barrier_height=1.0)
BUILD = {
    "langevin": lambda **kw: LangevinDynamics(ENERGY, step_size=0.05, **kw),
    "mala": lambda **kw: MALA(ENERGY, step_size=0.1, **kw),
    "hmc": lambda **kw: HamiltonianMonteCarlo(ENERGY, step_size=0.1, n_leapfrog_steps=3, **kw),
}

runs = st.fixed_dictionaries({
    "kind": st.sampled_from(sorted(BUILD)),
    "dtype": st.sampled_from([np.float32, np.float64]),
    "seed": st.integers(0, 2 ** 32 - 1),
    "n": st.integers(1, 40),
    "dim": st.integers(1, 4),
    "burn_in": st.integers(0, 5),
    "thin": st.integers(1, 5),
    "n_steps": st.integers(1, 30),
})


@given(runs)
def test_trajectory_diagnostics_and_final_state_agree(r):
    s = BUILD[r["kind"]](dtype=r["dtype"], seed=r["seed"])
    traj, d = s.sample(n_samples=r["n"], dim=r["dim"], n_steps=r["n_steps"], thin=r["thin"],
                       burn_in=r["burn_in"], return_trajectory=True, return_diagnostics=True)
    n_kept = r["n_steps"] // r["thin"]
    assert traj.shape == (r["n"], n_kept, r["dim"]) and traj.dtype == r["dtype"]
    assert np.isfinite(traj).all()
    final = s.get_state()["x"]
    if n_kept and r["n_steps"] % r["thin"] == 0:
        np.testing.assert_array_equal(final, traj[:, -1])
    tol = 1e-5 if r["dtype"] == np.float32 else 1e-12
    np.testing.assert_allclose(d.mean, traj.mean(axis=0), rtol=tol, atol=tol)
    assert d.energy.shape == (n_kept, r["n"]) and (d.acceptance_rate <= 1).all()
    assert s.get_state()["step"] == r["burn_in"] + r["n_steps"]


@given(runs, st.data())
def test_any_split_of_the_steps_and_of_the_chains_gives_the_same_bits(r, data):
    whole = BUILD[r["kind"]](dtype=r["dtype"], seed=r["seed"]).sample(
        n_samples=r["n"], dim=r["dim"], n_steps=r["n_steps"])
    first = data.draw(st.integers(1, r["n_steps"]))
    s = BUILD[r["kind"]](dtype=r["dtype"], seed=r["seed"])
    out = s.sample(n_samples=r["n"], dim=r["dim"], n_steps=first)
    if first < r["n_steps"]:
        out = s.sample(n_steps=r["n_steps"] - first, resume=True)
    np.testing.assert_array_equal(out, whole)
    # Chains lo.. alone, from the same starting states, with their global indices.
    lo = data.draw(st.integers(0, r["n"] - 1))
    x0 = BUILD[r["kind"]](dtype=r["dtype"], seed=r["seed"]).sample(
        n_samples=r["n"], dim=r["dim"], n_steps=1)
    ref = BUILD[r["kind"]](dtype=r["dtype"], seed=r["seed"]).sample(x=x0, n_steps=r["n_steps"])
    part = BUILD[r["kind"]](dtype=r["dtype"], seed=r["seed"]).sample(
        x=x0[lo:], n_steps=r["n_steps"], chain_offset=lo)
    np.testing.assert_array_equal(part, ref[lo:])
