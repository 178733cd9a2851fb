"""Checkpoints: ``npebm.io.save_state`` / ``load_state`` round trips, damage and kills."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import npebm.io
from npebm.energies import GaussianEnergy
from npebm.io import load_state, save_state
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

# One energy for every sampler: each sampler's kernel is compiled once for it.
ENERGY = GaussianEnergy([0.5, -0.5], [[1.0, 0.6], [0.6, 2.0]])
DENSE = np.array([[2.0, 0.3], [0.3, 1.0]])

#: name -> (a fresh sampler of the configuration, arguments of the first call)
CONFIGS = {
    "langevin": (lambda: LangevinDynamics(ENERGY, step_size=0.05), {}),
    "mala": (lambda: MALA(ENERGY, step_size=0.4), {}),
    "hmc-dense-mass": (lambda: HamiltonianMonteCarlo(ENERGY, step_size=0.3, n_leapfrog_steps=4,
                                                     mass=DENSE, jitter=0.2), {}),
    "hmc-adapted-diag": (lambda: HamiltonianMonteCarlo(ENERGY, step_size=0.1,
                                                       n_leapfrog_steps=4),
                         {"burn_in": 40, "adapt": "diag"}),
}


def _leftovers(directory, keep):
    return sorted(set(os.listdir(directory)) - set(keep))


# ----------------------------------------------------------------- exact resume

@pytest.mark.parametrize("name", CONFIGS)
def test_checkpoint_resume_equals_one_long_run(name, tmp_path):
    make, first = CONFIGS[name]
    n = 12
    long_run = make().sample(n_samples=3, n_steps=2 * n, seed=11, **first)

    before = make()
    before.sample(n_samples=3, n_steps=n, seed=11, **first)
    path = tmp_path / "chains.npz"
    save_state(path, before)
    assert _leftovers(tmp_path, ["chains.npz"]) == []

    after = load_state(path, make())  # a fresh object: all it knows comes from the file
    np.testing.assert_array_equal(after.sample(n_steps=n, resume=True), long_run)


@pytest.mark.parametrize("name", CONFIGS)
def test_checkpoint_holds_the_state_as_plain_arrays(name, tmp_path):
    make, first = CONFIGS[name]
    sampler = make()
    sampler.sample(n_samples=3, n_steps=5, seed=4, **first)
    expected = sampler.get_state()
    path = tmp_path / "chains.npz"
    save_state(str(path), sampler)

    state = load_state(path)
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].dtype == np.asarray(value).dtype, key
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    with np.load(path, allow_pickle=False) as npz:  # no pickled objects anywhere
        assert all(npz[k].dtype != object for k in npz.files)
        assert int(npz["__npebm_format__"]) == npebm.io.FORMAT_VERSION
        assert str(npz["__npebm_sampler__"]) == type(sampler).__name__
        assert str(npz["__npebm_version__"]) == npebm.__version__
    if name.startswith("hmc"):
        mass = DENSE if name == "hmc-dense-mass" else sampler.mass
        np.testing.assert_array_equal(state["mass"], mass)
    if name == "hmc-adapted-diag":  # the adapted values travel, not the constructor's
        assert state["mass"].shape == (2,) and float(state["step_size"]) != 0.1


def test_path_is_written_exactly_as_given(tmp_path):
    state = {"x": np.arange(6.0).reshape(3, 2)}
    save_state(tmp_path / "ckpt", state)  # no ".npz" appended, unlike np.savez
    save_state(os.fsdecode(tmp_path / "other.dat"), state)
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "other.dat"]
    np.testing.assert_array_equal(load_state(tmp_path / "ckpt")["x"], state["x"])
    save_state(tmp_path / "ckpt", {"x": state["x"] + 1})  # replaces the previous one
    np.testing.assert_array_equal(load_state(tmp_path / "ckpt")["x"], state["x"] + 1)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_checkpoint_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save_state(tmp_path / "c.npz", {"x": np.zeros(2)})
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "c.npz").st_mode & 0o777 == 0o644


# ----------------------------------------------------------------- damaged files

def _small_checkpoint(path):
    state = {"x": np.linspace(-1.0, 1.0, 24).reshape(12, 2), "step": np.int64(30)}
    save_state(path, state)
    return state


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, -1])
def test_truncated_file_is_refused(tmp_path, keep):
    good = tmp_path / "good.npz"
    _small_checkpoint(good)
    data = good.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[:n])
    with pytest.raises(ValueError, match="truncated.npz.* is not a complete npebm checkpoint"):
        load_state(bad)


def test_flipped_byte_in_the_middle_is_refused(tmp_path):
    good = tmp_path / "good.npz"
    save_state(good, {"x": np.random.default_rng(0).normal(size=(500, 4))})
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="flipped.npz.* is not a complete npebm checkpoint"):
        load_state(bad)


def test_no_single_flipped_byte_gives_wrong_data(tmp_path):
    """Flip one byte, at 500 places: the file is refused, or (a zip field nobody reads,
    such as a timestamp) it loads the saved state exactly -- never something else."""
    good = tmp_path / "good.npz"
    state = _small_checkpoint(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    refused = 0
    places = np.random.default_rng(7).choice(len(data), size=min(500, len(data)),
                                             replace=False)
    for i in places.tolist():
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        bad.write_bytes(bytes(damaged))
        try:
            loaded = load_state(bad)
        except ValueError as exc:
            assert "bad.npz" in str(exc)
            refused += 1
            continue
        assert set(loaded) == set(state), i
        for key in state:
            assert loaded[key].dtype == state[key].dtype, (i, key)
            np.testing.assert_array_equal(loaded[key], state[key], err_msg=f"byte {i}")
    assert refused > len(places) // 2


def test_foreign_files_are_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="plain.npz.* is not an npebm checkpoint"):
        load_state(tmp_path / "plain.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match="array.npy"):
        load_state(tmp_path / "array.npy")
    (tmp_path / "text.npz").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="text.npz"):
        load_state(tmp_path / "text.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError):
        load_state(str(tmp_path / "nowhere.npz"), MALA(ENERGY))


# ----------------------------------------------------------------- interrupted writes

@pytest.mark.parametrize("failure", ["replace", "fsync", "mid-write"])
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "chains.npz"
    old = _small_checkpoint(path)

    def fail(*args, **kwargs):
        raise OSError(f"simulated failure in {failure}")

    def half_then_killed(f, **arrays):
        f.write(b"PK\x03\x04" + b"\0" * 100)  # part of an archive, then the end
        raise KeyboardInterrupt

    if failure == "replace":
        monkeypatch.setattr(os, "replace", fail)
    elif failure == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(np, "savez", half_then_killed)
    with pytest.raises(KeyboardInterrupt if failure == "mid-write" else OSError):
        save_state(path, {"x": np.ones((12, 2)), "step": np.int64(99)})
    monkeypatch.undo()

    assert _leftovers(tmp_path, ["chains.npz"]) == []  # no temporary file left behind
    loaded = load_state(path)
    assert int(loaded["step"]) == 30
    np.testing.assert_array_equal(loaded["x"], old["x"])


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from npebm.io import save_state

    x = np.zeros((20000, 8))
    k = int(sys.argv[2])
    while True:
        k += 1
        x.fill(k)
        save_state(sys.argv[1], {"x": x, "k": np.int64(k)})
""")


def test_killed_writer_never_destroys_the_checkpoint(tmp_path):
    """A process writing checkpoints in a loop is SIGKILLed at random moments; the file
    always loads, holding one complete checkpoint."""
    path = tmp_path / "chains.npz"
    save_state(path, {"x": np.zeros((20000, 8)), "k": np.int64(0)})
    rng = np.random.default_rng(2024)
    last = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(last)])
        try:
            deadline = time.monotonic() + 20.0
            # Reading while the writer replaces the file: always a whole checkpoint.
            while int(load_state(path)["k"]) == last:
                assert proc.poll() is None, "the writer died"
                assert time.monotonic() < deadline, "the writer wrote nothing"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))  # then a random moment of the loop
        finally:
            proc.kill()  # SIGKILL on POSIX: no cleanup runs
            proc.wait()
        state = load_state(path)
        k = int(state["k"])
        assert k > last
        assert np.all(state["x"] == k)
        last = k
    # A kill mid-write may leave ".chains.npz.*.tmp" files; they never hide the checkpoint.
    assert all(name.startswith(".chains.npz.") and name.endswith(".tmp")
               for name in _leftovers(tmp_path, ["chains.npz"]))


# ----------------------------------------------------------------- misuse

def test_wrong_sampler_class_is_refused(tmp_path):
    path = tmp_path / "mala.npz"
    save_state(path, {"x": np.zeros((2, 2)), "pos": np.zeros(2, np.uint64),
                      "key": np.zeros(2, np.uint32), "step": np.int64(0),
                      "chain_offset": np.int64(0)})
    hmc = HamiltonianMonteCarlo(ENERGY)
    assert load_state(path, hmc) is hmc  # a bare dict names no class: any sampler takes it

    state = load_state(path)
    mala = MALA(ENERGY)
    mala.set_state(state)
    save_state(path, mala)
    fresh = HamiltonianMonteCarlo(ENERGY)
    with pytest.raises(ValueError, match="mala.npz.*MALA.*HamiltonianMonteCarlo"):
        load_state(path, fresh)
    with pytest.raises(RuntimeError):  # nothing was restored into it
        fresh.get_state()
    with pytest.raises(TypeError, match="set_state"):
        load_state(path, object())


def test_bad_arguments_to_save(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.raises(RuntimeError, match="not run"):
        save_state(path, MALA(ENERGY))
    with pytest.raises(TypeError, match="sampler_or_state"):
        save_state(path, [1, 2, 3])
    with pytest.raises(TypeError, match="objects"):
        save_state(path, {"x": np.array([{}, None], dtype=object)})
    with pytest.raises(ValueError, match="reserved"):
        save_state(path, {"__npebm_format__": np.int64(2)})
    with pytest.raises(FileNotFoundError):
        save_state(tmp_path / "no-such-dir" / "c.npz", {"x": np.zeros(2)})
    assert os.listdir(tmp_path) == []
