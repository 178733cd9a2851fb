"""The ``npebm`` command: each subcommand, each error path, checkpoints that survive a kill.

Most tests run the command as users do, ``python -m npebm ...`` in a subprocess (which
inherits the test session's throwaway NUMBA_CACHE_DIR, so kernels compile once).  The
energies are few on purpose: the Gaussian mixture the demo compiles for all three
samplers, and the Gaussian, so that the whole file compiles few kernels.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import npebm.io
from npebm.cli import main
from npebm.cli.bench import _bench_script
from npebm.cli.output import _plot_bounds

MIXTURE = ["--energy", "GaussianMixtureModel", "--param", "means=[[-2,0],[2,0]]",
           "covs_or_scales=0.7", "weights=[1,3]"]


def npebm_cli(*args, cwd=None, timeout=300):
    """Run ``python -m npebm args`` and return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, "-m", "npebm", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


class _InterruptAtSave:
    """``interrupt_at_save(n)``: the CLI's n-th checkpoint save writes its file, then
    raises KeyboardInterrupt (Ctrl-C just after it); returns the list that collects each
    save's ``cli_done``.  ``interrupt_at_save.disarm()`` restores the real save, and
    ``interrupt_at_save.run(n, args, ck, every)`` does all three around one CLI run."""

    def __init__(self, monkeypatch):
        self.monkeypatch, self.real_save = monkeypatch, npebm.io.save_state

    def __call__(self, n):
        saves = []

        def save_then_interrupt(path, state):
            self.real_save(path, state)
            saves.append(int(state["cli_done"]))
            if len(saves) == n:
                raise KeyboardInterrupt

        self.monkeypatch.setattr(npebm.io, "save_state", save_then_interrupt)
        return saves

    def disarm(self):
        self.monkeypatch.setattr(npebm.io, "save_state", self.real_save)

    def run(self, n, args, ck, every):
        """``main(args)`` checkpointing into ``ck`` every ``every`` steps, interrupted at
        the n-th save: it exits with the Ctrl-C code; returns the saves' ``cli_done``."""
        saves = self(n)
        with pytest.raises(SystemExit) as info:
            main([*args, "--checkpoint", str(ck), "--checkpoint-every", str(every)])
        self.disarm()
        assert info.value.code == 130
        return saves


@pytest.fixture
def interrupt_at_save(monkeypatch):
    return _InterruptAtSave(monkeypatch)


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def assert_same_files(a, b):
    a, b = load(a), load(b)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def assert_one_line_error(proc, *words):
    """Exit status 2, no traceback, one line on stderr naming what was wrong."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("npebm") and "error" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])


# --------------------------------------------------------------------------- demo

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
    pytest.importorskip("matplotlib")
    figure = tmp_path / "demo.png"  # by default: --out with .png
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure.unlink()
    assert main(["demo", "--n-samples", "50", "--n-steps", "10", "--grid", "5",
                 "--out", str(out), "--no-plot"]) == 0
    assert not figure.exists()


def test_demo_prints_parameters_compactly(tmp_path, monkeypatch, capsys):
    """The mixture's weights of 1/3 read 0.333, in the text and in the figure's title."""
    matplotlib_figure = pytest.importorskip("matplotlib.figure")
    titles = []
    real = matplotlib_figure.Figure.suptitle
    monkeypatch.setattr(matplotlib_figure.Figure, "suptitle",
                        lambda self, text, **kw: titles.append(text) or real(self, text, **kw))
    assert main(["demo", "--n-samples", "20", "--n-steps", "4", "--grid", "3",
                 "--out", str(tmp_path / "d.npz")]) == 0
    text = capsys.readouterr().out
    expected = "GaussianMixtureEnergy(means=[[-2, 0], [2, 0], [0, 2.5]], weights=[0.333, " \
               "0.333, 0.333])"
    assert titles == [expected]
    assert f"sampling {expected}" in text and "0.3333" not in text
    assert "each weighing 0.333" in text


@pytest.mark.parametrize("argv", [["demo", "--n-samples", "0"], ["demo", "--seed", "-1"],
                                  ["demo", "--n-steps", "many"], ["nope"],
                                  ["sample", "--sampler", "gibbs"],
                                  ["sample", "--n-steps", "0"],
                                  ["sample", "--step-size", "nan"],
                                  ["bench", "--quick", "--full"],
                                  ["info", "--verbose"]])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[-1].startswith("npebm") and "error" in err[-1]


# --------------------------------------------------------------------------- startup

@pytest.mark.parametrize("argv", [["--help"], ["sample", "--help"], ["--version"]])
def test_help_imports_nothing_heavy(argv):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "npebm", *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip().split(".")[0]
                for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "npebm" in imported
    heavy = {"numba", "scipy", "torch", "matplotlib", "dask", "cupy", "tqdm"} & imported
    assert not heavy, f"{argv} imported {heavy}"
    if argv == ["sample", "--help"]:
        for word in ("--checkpoint-every", "--resume", "gaussian_mixture", "barrier_height",
                     "underdamped", "--gamma", "--scheme", "OBABO"):
            assert word in proc.stdout


# --------------------------------------------------------------------------- sample

@pytest.mark.parametrize("sampler, extra", [
    ("langevin", ["--step-size", "0.02", "--noise-scale", "1.0"]),
    ("mala", ["--step-size", "0.1", "--dtype", "float64"]),
    ("hmc", ["--step-size", "0.2", "--n-leapfrog", "5", "--mass", "[1.0, 2.0]",
             "--progress"]),
    ("underdamped", ["--step-size", "0.1", "--gamma", "0.5", "--scheme", "obabo",
                     "--mass", "[1.0, 2.0]"]),
    ("chees", ["--step-size", "0.2", "--mass", "[1.0, 2.0]"]),
])
def test_sample_each_sampler(tmp_path, sampler, extra):
    out = tmp_path / "s.npz"
    proc = npebm_cli("sample", *MIXTURE, "--sampler", sampler, "--n-samples", 200,
                     "--n-steps", 40, "--burn-in", 10, "--seed", 3, "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "GaussianMixtureEnergy" in proc.stdout and f"wrote {out}" in proc.stdout
    data = load(out)
    assert sorted(data) == ["samples", "settings"]
    dtype = np.float32 if "float32" in extra else np.float64
    assert data["samples"].shape == (200, 2) and data["samples"].dtype == dtype
    assert np.isfinite(data["samples"]).all()
    settings = json.loads(str(data["settings"]))
    assert settings["energy"] == "gaussian_mixture" and settings["sampler"] == sampler
    assert settings["params"] == {"means": [[-2, 0], [2, 0]], "covs_or_scales": 0.7,
                                  "weights": [1, 3]}
    assert (settings["n_samples"], settings["n_steps"], settings["seed"]) == (200, 40, 3)
    if sampler == "hmc":
        # --n-leapfrog is the old spelling of --n-leapfrog-steps, kept as an alias
        assert settings["mass"] == [1.0, 2.0] and settings["n_leapfrog_steps"] == 5
        assert "%" in proc.stderr  # --progress
    if sampler == "underdamped":
        assert (settings["gamma"], settings["scheme"], settings["mass"]) == \
            (0.5, "OBABO", [1.0, 2.0])
    else:
        assert settings["gamma"] is None and settings["scheme"] is None
    # --step-size given: used as is, without adaptation
    assert settings["adapt"] is None and settings["burn_in"] == 10


@pytest.mark.parametrize("text, name", [
    ("langevin", "langevin"), ("ULA", "langevin"), ("LangevinDynamics", "langevin"),
    ("mala", "mala"), ("HamiltonianMonteCarlo", "hmc"), ("underdamped", "underdamped"),
    ("ul", "underdamped"), ("UnderdampedLangevin", "underdamped"),
    ("underdamped_langevin", "underdamped"), ("kinetic", "underdamped"),
])
def test_sampler_names_and_aliases(text, name):
    from npebm.cli.parser import _parser

    args = _parser().parse_args(["sample", "--sampler", text])
    assert args.sampler == name


def test_sampler_table_matches_the_library():
    """Each --sampler runs a class of npebm.samplers that takes the options the table gives
    it, by the same names; the default step sizes the help quotes are the library's; the
    samplers that adapt are those with an acceptance step (target_accept)."""
    import inspect

    import npebm.samplers
    from npebm.cli.settings import _RESULT_SETTINGS, SAMPLERS

    for name, spec in SAMPLERS.items():
        params = inspect.signature(getattr(npebm.samplers, spec.cls)).parameters
        assert params["step_size"].default == spec.step_size, name
        assert set(spec.options) <= set(params) & set(_RESULT_SETTINGS), name
        assert bool(spec.adapt) == ("target_accept" in params), name
    assert SAMPLERS["underdamped"].step_size == 1e-2


def test_adapt_fisher_is_a_mass_mode_of_hmc():
    from npebm.cli.common import UsageError
    from npebm.cli.parser import _parser
    from npebm.cli.settings import _check_sampler_settings, _fresh_settings

    def settings(sampler):
        args = _parser().parse_args(["sample", "--energy", "gaussian", "--sampler", sampler,
                                     "--n-samples", "4", "--n-steps", "4", "--out", "x.npz",
                                     "--adapt", "fisher"])
        s = _fresh_settings(args)
        _check_sampler_settings(s)
        return s

    assert settings("hmc")["adapt"] == "fisher"
    with pytest.raises(UsageError, match="--adapt fisher estimates a mass matrix"):
        settings("mala")


def test_sample_gaussian_by_torchebm_name_in_three_dimensions(tmp_path):
    out = tmp_path / "g.npz"
    proc = npebm_cli("sample", "--energy", "GaussianModel", "--param", "mean=[1,-1,0.5]",
                     "--param", "cov=[[1,0.5,0],[0.5,2,0],[0,0,0.5]]", "--sampler",
                     "langevin", "--step-size", "0.05", "--n-samples", 400, "--n-steps", 300,
                     "--seed", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr
    x = load(out)["samples"]
    assert x.shape == (400, 3)
    # Loose: 400 chains after 300 steps of step 0.05 (about 15 time units) are near
    # the target; the statistical tests live in test_sampler_statistics.py.
    np.testing.assert_allclose(x.mean(axis=0), [1.0, -1.0, 0.5], atol=0.35)
    # The same run again: the seed fixes every bit.
    again = tmp_path / "again.npz"
    proc = npebm_cli("sample", "--energy", "gaussian", "--param", "mean=[1,-1,0.5]",
                     "--param", "cov=[[1,0.5,0],[0.5,2,0],[0,0,0.5]]", "--sampler",
                     "LangevinDynamics", "--step-size", "0.05", "--n-samples", 400,
                     "--n-steps", 300, "--seed", 1, "--out", again)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(load(again)["samples"], x)


def test_sample_trajectory_diagnostics_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "t.npz", tmp_path / "t.png"
    proc = npebm_cli("sample", *MIXTURE, "--sampler", "hmc", "--step-size", "0.3",
                     "--n-samples", 64, "--n-steps", 50, "--thin", 5, "--burn-in", 20,
                     "--trajectory", "--diagnostics", "--seed", 7, "--out", out,
                     "--plot", png)
    assert proc.returncode == 0, proc.stderr
    data = load(out)
    n, kept = 64, 50 // 5
    assert data["samples"].shape == (n, kept, 2)
    assert data["diag_energy"].shape == (kept, n)
    assert data["diag_grad_norm"].shape == (kept, n)
    assert data["diag_mean"].shape == data["diag_var"].shape == (kept, 2)
    assert data["diag_step_size"].shape == (kept,)
    np.testing.assert_array_equal(data["diag_step_size"], 0.3)
    rate = data["diag_acceptance_rate"]
    assert rate.shape == (kept,) and np.all((rate >= 0) & (rate <= 1))
    assert data["diag_divergences"].shape == (n,)
    # the per-step moments are those of the kept states
    np.testing.assert_allclose(data["diag_mean"], data["samples"].mean(axis=0), rtol=1e-12,
                               atol=1e-12)
    assert "acceptance rate" in proc.stdout
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_flagship_command_leaves_no_chain_stuck(tmp_path):
    """The README's command, smaller.  From the library's N(0, I) start with HMC's default
    step size, chain 783 of seed 9 starts near |x| = 5, where the double well is so steep
    that every proposal is rejected: it never moves, and stretches the figure.  The CLI
    starts the chains near the origin and tunes the step size in a burn-in: no chain is
    stuck.  Asked for the old start and step size, it names the stuck chain in one line
    and keeps it out of the figure's range."""
    pytest.importorskip("matplotlib")
    run = ["sample", "--energy", "double_well", "--param", "barrier_height=3", "--dim", 2,
           "--sampler", "hmc", "--n-samples", 2000, "--n-steps", 60, "--seed", 9]
    out, png = tmp_path / "chains.npz", tmp_path / "chains.png"
    proc = npebm_cli(*run, "--diagnostics", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert "adapt step_size, the default without --step-size" in proc.stdout
    data = load(out)
    settings = json.loads(str(data["settings"]))
    assert (settings["adapt"], settings["burn_in"], settings["init_scale"]) == \
        ("step_size", 500, 0.1)
    assert data["diag_n_accepted"].min() > 0  # counted after burn-in, when adapting
    assert np.abs(data["samples"]).max() < 3

    proc = npebm_cli(*run, "--init-scale", 1, "--adapt", "none", "--out", out, "--plot", png)
    assert proc.returncode == 0, proc.stderr
    stuck = [line for line in proc.stderr.splitlines() if "never accepted" in line]
    assert len(stuck) == 1, proc.stderr
    assert stuck[0].startswith("npebm sample: warning: 1 of 2000 chains never accepted a "
                               "proposal in the 60 steps after burn-in (chains 783)")
    assert "SamplingWarning" not in proc.stderr  # the library's own, replaced by the line
    assert "wrote " + str(png) + " (1 of 2000 points lie outside the drawn range)" \
        in proc.stdout
    assert json.loads(str(load(out)["settings"]))["adapt"] is None


def test_progress_is_one_bar_for_a_checkpointed_run(tmp_path):
    """The bar goes once from 0 to 100 %, not from 0 % again in every checkpoint segment."""
    proc = npebm_cli("sample", "--energy", "gaussian", "--sampler", "langevin",
                     "--step-size", "0.01", "--n-samples", 20, "--n-steps", 300,
                     "--burn-in", 100, "--checkpoint", tmp_path / "ck",
                     "--checkpoint-every", 100, "--progress", "--out", tmp_path / "x.npz")
    assert proc.returncode == 0, proc.stderr
    shown = [float(p) for p in re.findall(r"(\d+(?:\.\d+)?)%", proc.stderr)]
    assert shown == sorted(shown), shown
    assert shown[0] == 0 and shown[-1] == 100 and any(0 < p < 100 for p in shown), shown
    assert "Traceback" not in proc.stderr


def test_plot_bounds_leave_out_a_few_far_points():
    x = np.random.default_rng(0).uniform(-1.5, 1.5, size=(10_000, 2))
    bounds, outside = _plot_bounds(x)
    assert outside == 0
    for (lo, hi), column in zip(bounds, x.T):
        assert lo < column.min() and hi > column.max() and hi - lo < 3.5
    x[:4] = [[4.0, 0.5], [-4.5, 4.0], [1e3, 0.0], [np.nan, 0.0]]  # stuck or diverged
    bounds, outside = _plot_bounds(x)
    assert outside == 3
    assert all(-3.5 < lo and hi < 3.5 for lo, hi in bounds)
    bounds, outside = _plot_bounds(x[:, :1])  # one dimension: one range
    assert len(bounds) == 1 and outside == 3


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("args, words", [
    (["--energy", "nope"], ["unknown energy 'nope'", "gaussian_mixture", "double_well"]),
    (["--energy", "gaussian", "--param", "foo=1"],
     ["unknown parameter 'foo'", "mean, cov"]),
    (["--energy", "double_well", "--param", "barrier_height=[1,"],
     ["--param barrier_height", "cannot read"]),
    (["--energy", "double_well", "--param", "barrier_height"], ["NAME=VALUE"]),
    (["--energy", "double_well", "--param", "b='far'"], ["--param b", "cannot read"]),
    (["--energy", "double_well", "--param", "barrier_height=-1"], ["barrier_height"]),
    (["--energy", "gaussian", "--param", "cov=[[1,2],[2,1]]"], ["cov", "positive definite"]),
    (["--energy", "gaussian_mixture"], ["needs --param means"]),
    (["--energy", "himmelblau", "--dim", "3"], ["--dim 3", "himmelblau"]),
    (["--energy", "gaussian", "--sampler", "gibbs"], ["unknown sampler 'gibbs'",
                                                      "underdamped"]),
    (["--energy", "gaussian", "--n-steps", "0"], ["--n-steps"]),
    (["--energy", "gaussian", "--n-samples", "-3"], ["--n-samples"]),
    (["--energy", "gaussian", "--checkpoint-every", "10"],
     ["--checkpoint-every needs --checkpoint"]),
    (["--energy", "gaussian", "--checkpoint", "ck.npz"], ["--checkpoint-every"]),
    (["--energy", "gaussian", "--checkpoint", "ck.npz", "--checkpoint-every", "3",
      "--thin", "2", "--trajectory"], ["multiple of --thin"]),
    (["--energy", "gaussian", "--n-leapfrog", "4"], ["--n-leapfrog", "hmc"]),
    (["--energy", "gaussian", "--adapt", "step_size"], ["--adapt", "Langevin"]),
    (["--energy", "gaussian", "--sampler", "hmc", "--gamma", "2"],
     ["--gamma is for --sampler underdamped, not hmc"]),
    (["--energy", "gaussian", "--sampler", "mala", "--scheme", "OBABO"],
     ["--scheme is for --sampler underdamped, not mala"]),
    (["--energy", "gaussian", "--mass", "2"],
     ["--mass is for --sampler hmc, nuts, chees or underdamped"]),
    (["--energy", "gaussian", "--sampler", "underdamped", "--noise-scale", "2"],
     ["--noise-scale is for --sampler langevin, not underdamped"]),
    (["--energy", "gaussian", "--sampler", "underdamped", "--adapt", "step_size"],
     ["--adapt", "underdamped Langevin is unadjusted", "mala, hmc, nuts or chees"]),
    (["--energy", "gaussian", "--sampler", "underdamped", "--adapt", "diag"],
     ["--adapt", "unadjusted"]),
    (["--energy", "gaussian", "--sampler", "ul", "--gamma", "-1"], ["--gamma", "'-1'"]),
    (["--energy", "gaussian", "--sampler", "ul", "--scheme", "ABO"], ["--scheme", "ABO"]),
    (["--energy", "gaussian", "--device", "tpu"], ["device"]),
    (["--energy", "gaussian", "--out", "no/such/dir/x.npz"], ["does not exist"]),
    (["--resume", "missing.npz"], ["no such checkpoint"]),
    (["--energy", "gaussian", "--sampler", None, "--n-steps", None],
     ["required", "--sampler", "--n-steps"]),
])
def test_sample_errors_are_one_line_exit_2(tmp_path, args, words):
    """Each bad argument of ``sample``; the others valid (a flag given None is left out)."""
    defaults = ["--sampler", "langevin", "--n-samples", "4", "--n-steps", "4",
                "--out", "x.npz"]
    if "--resume" not in args:
        args = args + [a for flag, value in zip(defaults[::2], defaults[1::2])
                       if flag not in args for a in (flag, value)]
    args = [a for a, b in zip(args, args[1:] + [""]) if a is not None and b is not None]
    proc = npebm_cli("sample", *args, cwd=tmp_path)
    assert_one_line_error(proc, *words)
    assert not (tmp_path / "x.npz").exists()


def test_parameters_are_never_evaluated(tmp_path):
    proc = npebm_cli("sample", "--energy", "harmonic", "--param",
                     "k=__import__('pathlib').Path('pwned').touch()", "--sampler", "mala",
                     "--n-samples", 2, "--n-steps", 2, "--out", "x.npz", cwd=tmp_path)
    assert_one_line_error(proc, "--param k", "cannot read")
    assert not (tmp_path / "pwned").exists()


def in_process_error(capsys, argv):
    """Run ``main(argv)`` expecting exit status 2: the one stderr line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("npebm ") and ": error: " in err[0], err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("args, words", [
    (["--out", "."], ["--out .", "is a directory"]),
    (["--plot", "."], ["--plot .", "is a directory"]),
    # matplotlib would write figure.png for "figure": refused, never redirected
    (["--plot", "figure"], ["--plot figure", "no extension", "figure.png"]),
    (["--plot", "figure.txt"], ["unknown figure format '.txt'"]),
    (["--plot", "no/such/f.png"], ["--plot", "does not exist"]),
    (["--checkpoint", ".", "--checkpoint-every", "2"], ["--checkpoint .", "is a directory"]),
    (["--checkpoint", "gone/ck", "--checkpoint-every", "2"],
     ["--checkpoint gone/ck", "does not exist"]),
    (["--checkpoint", "x.npz", "--checkpoint-every", "2"],
     ["--out and --checkpoint name the same file"]),
    (["--n-leapfrog-steps", "4"], ["--n-leapfrog-steps is for --sampler hmc"]),
    (["--n-samples", "1000000", "--n-steps", "100000000", "--trajectory"],
     ["GiB", "--thin"]),
])
def test_outputs_are_checked_before_sampling(tmp_path, monkeypatch, capsys, args, words):
    """A bad output path is refused before any work (it used to fail after sampling,
    losing the samples), as one line."""
    monkeypatch.chdir(tmp_path)
    defaults = {"--n-samples": "4", "--n-steps": "4", "--out": "x.npz"}
    argv = ["sample", "--energy", "gaussian", "--sampler", "langevin", *args]
    for flag, value in defaults.items():
        if flag not in args:
            argv += [flag, value]
    line = in_process_error(capsys, argv)
    for word in words:
        assert word in line, (word, line)
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write in a read-only directory")
def test_read_only_directory_is_refused_before_sampling(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = in_process_error(capsys, [
            "sample", "--energy", "gaussian", "--sampler", "langevin", "--n-samples", "4",
            "--n-steps", "4", "--out", str(locked / "x.npz")])
    finally:
        locked.chmod(0o755)
    assert "cannot write in the directory" in line


def test_demo_writes_exactly_the_paths_given(tmp_path, capsys):
    """``--out results`` is written as named (np.savez would add .npz), and a figure
    path that is a directory is refused before sampling (it used to write DIR.png)."""
    out = tmp_path / "results"
    assert main(["demo", "--n-samples", "20", "--n-steps", "4", "--grid", "3",
                 "--out", str(out), "--no-plot"]) == 0
    assert out.is_file() and sorted(os.listdir(tmp_path)) == ["results"]
    assert sorted(load(out)) == ["grid_axis", "grid_energy", "hmc", "langevin", "mala", "means"]
    capsys.readouterr()
    line = in_process_error(capsys, ["demo", "--out", str(tmp_path / "d.npz"), "--plot",
                                     str(tmp_path)])
    assert "is a directory" in line
    assert sorted(os.listdir(tmp_path)) == ["results"]


class _Boom:
    """A stand-in for ``sampler.sample`` raising what the library may raise."""

    def __init__(self, exc):
        self.exc = exc

    def __call__(self, *args, **kwargs):
        raise self.exc


@pytest.mark.parametrize("exc, words", [
    (ValueError("x: the energy is NaN or inf at the starting state of every chain"),
     ["every chain"]),
    (TypeError("x must hold floating-point numbers"), ["floating-point"]),
    (MemoryError("Unable to allocate 1.5 TiB"), ["out of memory", "1.5 TiB"]),
    (MemoryError(), ["out of memory"]),
    (RuntimeError("CUDA driver not found"), ["CUDA driver"]),
])
def test_library_errors_are_one_line(monkeypatch, capsys, tmp_path, exc, words):
    import npebm.samplers

    monkeypatch.setattr(npebm.samplers.MALA, "sample", _Boom(exc))
    line = in_process_error(capsys, ["sample", "--energy", "gaussian", "--sampler", "mala",
                                     "--n-samples", "4", "--n-steps", "4",
                                     "--out", str(tmp_path / "x.npz")])
    assert line.startswith("npebm sample: error: ")
    for word in words:
        assert word in line
    assert not (tmp_path / "x.npz").exists()


def test_every_chain_at_an_infinite_energy_is_one_line(tmp_path):
    proc = npebm_cli("sample", "--energy", "gaussian", "--param", "mean=[1e200,0]",
                     "--param", "cov=[[1e-200,0],[0,1]]", "--sampler", "langevin",
                     "--n-samples", 3, "--n-steps", 3, "--out", tmp_path / "x.npz")
    assert_one_line_error(proc, "every chain")


def test_library_warnings_are_one_line_each(monkeypatch, capsys, tmp_path):
    """A SamplingWarning (or any warning) during sampling: one line each, without the
    warnings module's "file:line: category" prefix, once however many calls repeat it."""
    import warnings

    import npebm.samplers

    category = getattr(npebm.samplers, "SamplingWarning", UserWarning)
    real = npebm.samplers.LangevinDynamics.sample

    def noisy(self, *args, **kwargs):
        warnings.warn("3 of 40 chains\nstart where the energy is not finite", category)
        warnings.warn("overflow in the energy", RuntimeWarning)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(npebm.samplers.LangevinDynamics, "sample", noisy)
    assert main(["sample", "--energy", "gaussian", "--sampler", "langevin", "--n-samples",
                 "40", "--n-steps", "300", "--checkpoint", str(tmp_path / "ck"),
                 "--checkpoint-every", "100", "--step-size", "0.01",
                 "--out", str(tmp_path / "x.npz")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "3 of 40" in line] == [
        "npebm sample: warning: 3 of 40 chains start where the energy is not finite"]
    assert [line for line in err if "overflow" in line] == [
        "npebm sample: warning: RuntimeWarning: overflow in the energy"]
    assert not [line for line in err if ".py:" in line or "warnings.warn" in line]


# --------------------------------------------------------------------------- checkpoints

def _read_done(path):
    """Steps recorded in a checkpoint, or None while it is missing (never half-read)."""
    try:
        return int(npebm.io.load_state(path)["cli_done"])
    except FileNotFoundError:
        return None


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    # Long enough (a few seconds) to be killed between checkpoints; Langevin on a
    # Gaussian is the cheapest step there is.
    every, burn_in, n_steps = 2000, 1000, 24000
    run = ["sample", "--energy", "gaussian", "--sampler", "langevin", "--step-size", "0.01",
           "--n-samples", 2000, "--n-steps", n_steps, "--burn-in", burn_in,
           "--thin", every, "--trajectory", "--diagnostics", "--seed", 11]
    plain = tmp_path / "plain.npz"
    proc = npebm_cli(*run, "--out", plain)
    assert proc.returncode == 0, proc.stderr

    ck, out = tmp_path / "ck.npz", tmp_path / "resumed.npz"
    child = subprocess.Popen([sys.executable, "-m", "npebm", *map(str, run), "--out",
                              str(out), "--checkpoint", str(ck), "--checkpoint-every",
                              str(every)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        seen = set()
        # Wait until the checkpoint exists and has been rewritten at least once.
        while child.poll() is None and time.monotonic() < deadline:
            done = _read_done(ck)
            if done is not None:
                seen.add(done)
            if len(seen) >= 2:
                break
            time.sleep(0.005)
        assert child.poll() is None, "the run ended before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not out.exists()
    done = _read_done(ck)
    assert burn_in + every <= done < burn_in + n_steps

    proc = npebm_cli("sample", "--resume", ck)  # --out and the rest from the checkpoint
    assert proc.returncode == 0, proc.stderr
    assert f"at step {done} of {burn_in + n_steps}" in proc.stdout
    assert_same_files(plain, out)
    assert _read_done(ck) == burn_in + n_steps


def test_interrupted_run_with_adaptation_resumes(tmp_path, capsys, interrupt_at_save):
    """Ctrl-C after the second checkpoint (HMC adapting a diagonal mass in burn-in),
    then --resume: the adapted step size and mass come back from the checkpoint."""
    run = ["sample", *MIXTURE, "--sampler", "hmc", "--adapt", "diag", "--burn-in", "150",
           "--n-samples", "40", "--n-steps", "90", "--thin", "3", "--trajectory",
           "--diagnostics", "--seed", "5"]
    plain = tmp_path / "plain.npz"
    assert main([*run, "--out", str(plain)]) == 0

    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    saves = interrupt_at_save.run(2, [*run, "--out", str(out)], ck, 30)
    assert "--resume" in capsys.readouterr().err
    assert saves == [150 + 30, 150 + 60] and not out.exists()

    # Settings given again must agree with the checkpoint's.
    with pytest.raises(SystemExit) as info:
        main(["sample", "--resume", str(ck), "--n-steps", "91"])
    assert info.value.code == 2
    assert "--n-steps 91 differs" in capsys.readouterr().err

    assert main(["sample", "--resume", str(ck)]) == 0
    assert "at step 210 of 240" in capsys.readouterr().out
    assert_same_files(plain, out)
    data = load(out)
    assert data["diag_adapted_mass"].shape == (2,)
    assert data["samples"].shape == (40, 30, 2)
    # Resuming a finished run writes the same result again.
    again = tmp_path / "again.npz"
    assert main(["sample", "--resume", str(ck), "--out", str(again), *run[1:9]]) == 0
    assert_same_files(plain, again)


def test_underdamped_resumes_with_its_momentum(tmp_path, capsys, interrupt_at_save):
    """Underdamped Langevin's momentum is part of each chain's state: a run interrupted
    after a checkpoint and resumed from it equals one uninterrupted run, bit for bit, and
    keeps the checkpoint's --gamma and --scheme.  Resumed from the same checkpoint with
    the momentum zeroed, it does not: the momentum travelled through the checkpoint."""
    run = ["sample", "--energy", "gaussian", "--sampler", "underdamped", "--gamma", "2",
           "--scheme", "OBABO", "--step-size", "0.1", "--burn-in", "20", "--n-samples", "30",
           "--n-steps", "60", "--thin", "2", "--trajectory", "--diagnostics", "--seed", "8"]
    plain = tmp_path / "plain.npz"
    assert main([*run, "--out", str(plain)]) == 0
    settings = json.loads(str(load(plain)["settings"]))
    assert (settings["sampler"], settings["gamma"], settings["scheme"]) == \
        ("underdamped", 2.0, "OBABO")
    assert settings["adapt"] is None  # an unadjusted sampler never adapts by default

    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    saves = interrupt_at_save.run(2, [*run, "--out", str(out)], ck, 20)
    assert saves == [20, 40] and not out.exists()
    state = npebm.io.load_state(ck)
    assert state["momentum"].shape == (30, 2) and np.all(state["momentum"] != 0)
    saved = json.loads(str(state["cli_settings"]))
    assert (saved["gamma"], saved["scheme"]) == (2.0, "OBABO")
    capsys.readouterr()

    # Settings given again must agree with the checkpoint's.
    for flag, value, words in (("--gamma", "1", "--gamma 1.0 differs"),
                               ("--scheme", "baoab", "--scheme BAOAB differs")):
        line = in_process_error(capsys, ["sample", "--resume", str(ck), flag, value])
        assert words in line and f"({saved[flag[2:]]})" in line, line

    # The momentum zeroed in a copy of the checkpoint: another result.
    zeroed, other = tmp_path / "zeroed.npz", tmp_path / "other.npz"
    npebm.io.save_state(zeroed, dict(state, momentum=np.zeros_like(state["momentum"])))
    assert main(["sample", "--resume", str(zeroed), "--out", str(other)]) == 0
    assert not np.array_equal(load(other)["samples"], load(plain)["samples"])
    capsys.readouterr()

    assert main(["sample", "--resume", str(ck), "--gamma", "2", "--scheme", "obabo"]) == 0
    assert "at step 40 of 80" in capsys.readouterr().out
    assert_same_files(plain, out)
    assert load(out)["samples"].shape == (30, 30, 2)


def test_damaged_checkpoint_is_refused(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    assert main(["sample", *MIXTURE, "--sampler", "langevin", "--step-size", "0.02",
                 "--n-samples", "8", "--n-steps", "20", "--seed", "2", "--out",
                 str(tmp_path / "x.npz"), "--checkpoint", str(ck),
                 "--checkpoint-every", "10"]) == 0
    blob = ck.read_bytes()
    for size in (0, 100, len(blob) // 2, len(blob) - 1):
        bad = tmp_path / f"bad{size}.npz"
        bad.write_bytes(blob[:size])
        with pytest.raises(SystemExit) as info:
            main(["sample", "--resume", str(bad), "--out", str(tmp_path / "y.npz")])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "not a complete npebm checkpoint" in err[0], err
    assert not (tmp_path / "y.npz").exists()
    # A valid archive whose chains were altered (a bit flipped in x, the zip's own CRC
    # recomputed): npebm's checksum catches it.
    with zipfile.ZipFile(ck) as src, zipfile.ZipFile(tmp_path / "flipped.npz", "w") as dst:
        for item in src.infolist():
            data = bytearray(src.read(item))
            if item.filename == "x.npy":
                data[-1] ^= 0x01
            dst.writestr(item, bytes(data))
    proc = npebm_cli("sample", "--resume", tmp_path / "flipped.npz")
    assert_one_line_error(proc, "flipped.npz", "checksum mismatch")
    # A checkpoint saved by the library, not by `npebm sample`: refused, said why.
    plain_state = tmp_path / "state.npz"
    npebm.io.save_state(plain_state, {k: v for k, v in npebm.io.load_state(ck).items()
                                      if not k.startswith("cli_")})
    proc = npebm_cli("sample", "--resume", plain_state)
    assert_one_line_error(proc, "not one written by `npebm sample --checkpoint`")


def test_checkpoint_from_before_n_leapfrog_steps_resumes(tmp_path, capsys, interrupt_at_save):
    """A checkpoint whose settings say ``n_leapfrog`` (before --n-leapfrog-steps), without
    ``init_scale``, ``gamma`` and ``scheme`` (before underdamped Langevin), ``tempering``
    and ``reference_scale`` (before --tempering) or the run_* counts: resumed to the
    uninterrupted result, its settings in the same order."""
    run = ["sample", *MIXTURE, "--sampler", "hmc", "--step-size", "0.3",
           "--n-leapfrog-steps", "4", "--init-scale", "1", "--n-samples", "8",
           "--n-steps", "60", "--seed", "4", "--diagnostics"]
    plain = tmp_path / "plain.npz"
    assert main([*run, "--out", str(plain)]) == 0
    assert json.loads(str(load(plain)["settings"]))["n_leapfrog_steps"] == 4

    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    interrupt_at_save.run(1, [*run, "--out", str(out)], ck, 20)
    state = npebm.io.load_state(ck)
    settings = json.loads(str(state["cli_settings"]))
    settings = {("n_leapfrog" if k == "n_leapfrog_steps" else k): v
                for k, v in settings.items()
                if k not in ("init_scale", "gamma", "scheme", "tempering", "reference_scale")}
    state["cli_settings"] = np.str_(json.dumps(settings))
    for name in ("cli_run_accepted", "cli_run_divergences"):
        del state[name]
    npebm.io.save_state(ck, state)
    capsys.readouterr()
    assert main(["sample", "--resume", str(ck), "--n-leapfrog-steps", "4"]) == 0
    assert "at step 20 of 60" in capsys.readouterr().out
    assert_same_files(plain, out)


# --------------------------------------------------------------------------- info, bench

def test_info_reports_versions_threads_cache_and_devices():
    proc = npebm_cli("info")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for word in ("npebm", "python", "numpy", "numba", "CPUs", "threads",
                 "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "threading layer in use",
                 "NUMBA_CACHE_DIR", "optional packages", "cupy", "numba-cuda", "torch",
                 "matplotlib", "dask", "tqdm", "devices", "cuda", "CUDA simulator"):
        assert word in text, word
    assert os.environ["NUMBA_CACHE_DIR"] in text
    cache = pytest.importorskip("npebm._numba_cache")
    # The sources' hash afresh (not this process's, remembered from its first compile).
    where = cache.cache_dir(cache.source_hash.__wrapped__())
    assert f"npebm's kernel cache      {where}\n" in text


def test_info_without_the_cache_module(monkeypatch, capsys):
    """Where npebm._numba_cache cannot be imported, info reports Numba's setting alone."""
    import npebm.cli.info as cli

    monkeypatch.setitem(sys.modules, "npebm._numba_cache", None)  # import fails
    # (not the parts that take seconds: a parallel compile, a look for CUDA)
    monkeypatch.setattr(cli, "_threading_layer", lambda numba: "not asked")
    monkeypatch.setattr(cli, "_cuda_lines", lambda: [])
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert os.environ["NUMBA_CACHE_DIR"] in text and "npebm's kernel cache" not in text


def test_bench_runs_the_suite_quickly(monkeypatch, capsys):
    script = _bench_script()
    assert script is not None and script.name == "bench_samplers.py"
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert main(["bench"]) == 0
    assert calls == [[sys.executable, str(script), "--contenders", "limit,npebm",
                      "--workloads", "W1,W2", "--quick"]]


def test_bench_builtin_timing():
    proc = npebm_cli("bench", "--builtin", "--dtype", "float64", "--chains", 16,
                     "--steps", 10)
    assert proc.returncode == 0, proc.stderr
    for word in ("langevin", "mala", "hmc", "chain-steps/s"):
        assert word in proc.stdout
    rates = [float(line.split()[-1]) for line in proc.stdout.splitlines()
             if line.split() and line.split()[0] in ("langevin", "mala", "hmc")]
    assert len(rates) == 3 and all(r > 0 for r in rates)


def test_nuts_adapts_and_resumes_from_a_checkpoint(tmp_path, capsys, interrupt_at_save):
    """NUTS from the command line: --max-tree-depth and --adapt fisher reach the sampler
    and are saved; a run interrupted after a checkpoint and resumed equals one
    uninterrupted run, bit for bit (the adapted step size and mass travel with it); the
    tree's depth and gradient count come out with --diagnostics."""
    run = ["sample", "--energy", "gaussian", "--sampler", "nuts", "--max-tree-depth", "5",
           "--adapt", "fisher", "--burn-in", "60", "--n-samples", "20", "--n-steps", "40",
           "--diagnostics", "--seed", "8"]
    plain = tmp_path / "plain.npz"
    assert main([*run, "--out", str(plain)]) == 0
    data = load(plain)
    settings = json.loads(str(data["settings"]))
    assert (settings["sampler"], settings["max_tree_depth"], settings["adapt"]) == \
        ("nuts", 5, "fisher")
    depth, n_leap = data["diag_tree_depth"], data["diag_n_leapfrog"]
    assert depth.shape == (40, 20) and 1 <= depth.max() <= 5
    assert np.all(n_leap >= 2 ** depth - 1)

    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    saves = interrupt_at_save.run(2, [*run, "--out", str(out)], ck, 20)
    assert saves == [80, 100]
    capsys.readouterr()
    line = in_process_error(capsys, ["sample", "--resume", str(ck), "--max-tree-depth", "6"])
    assert "--max-tree-depth 6 differs" in line, line
    assert main(["sample", "--resume", str(ck)]) == 0
    resumed = load(out)
    for name in ("samples", "diag_tree_depth", "diag_n_leapfrog", "diag_energy"):
        np.testing.assert_array_equal(resumed[name], data[name])
    line = in_process_error(capsys, ["sample", "--energy", "gaussian", "--sampler", "hmc",
                                     "--max-tree-depth", "4", "--n-samples", "2",
                                     "--n-steps", "2", "--out", str(out)])
    assert "--max-tree-depth is for --sampler nuts, not hmc" in line, line


# --------------------------------------------------------------------------- tempering

#: Two modes far apart, the far one (from the chains' start near 0) three times heavier:
#: a plain sampler's chains all fall into the near one and stay there.
FAR_MODES = ["--energy", "gaussian_mixture", "--param", "means=[[-4,0],[2,0]]",
             "covs_or_scales=0.5", "weights=[3,1]"]


def test_tempering_reaches_the_far_mode_and_estimates_log_z(tmp_path, capsys):
    """HMC alone leaves the heavier, far mode (weight 3/4) empty; with --tempering the
    final states of the independent ladders fill it in proportion, within 4 standard
    errors of a binomial share of n.  The mixture is normalised (log Z = 0): the written
    log Z is within 3 of its standard errors of 0."""
    n, weight = 200, 0.75
    run = ["sample", *FAR_MODES, "--sampler", "hmc", "--n-samples", str(n), "--n-steps",
           "100", "--burn-in", "200", "--seed", "3"]
    tol = 4 * np.sqrt(weight * (1 - weight) / n)
    plain, tempered = tmp_path / "plain.npz", tmp_path / "pt.npz"
    assert main([*run, "--out", str(plain)]) == 0
    share = np.mean(load(plain)["samples"][:, 0] < -1)
    assert abs(share - weight) > tol, share
    capsys.readouterr()

    assert main([*run, "--tempering", "4", "--out", str(tempered)]) == 0
    text = capsys.readouterr().out
    data = load(tempered)
    settings = json.loads(str(data["settings"]))
    assert (settings["tempering"], settings["reference_scale"]) == (4, None)
    assert data["samples"].shape == (n, 2)
    share = np.mean(data["samples"][:, 0] < -1)
    assert abs(share - weight) < tol, (share, tol)
    log_z, se = float(data["log_z"]), float(data["log_z_se"])
    assert 0 < se < 0.2 and abs(log_z) < 3 * se, (log_z, se)
    betas = data["betas"]
    assert betas.shape == (4,) and betas[0] == 0 and betas[-1] == 1
    assert np.all(np.diff(betas) > 0)
    assert f"log Z = {log_z:.4g} ± {se:.2g}" in text, text
    for words in ("parallel tempering: each chain a ladder of 4", "swap acceptance",
                  "barrier Λ =", "temperatures suffice (4 used", "round trips"):
        assert words in text, (words, text)
    assert "diag_log_z" not in data  # the tempering diagnostics come with --diagnostics


def test_tempered_run_resumes_bit_for_bit(tmp_path, capsys, interrupt_at_save):
    """A tempered run interrupted after a checkpoint and resumed equals one uninterrupted
    run without checkpoints, bit for bit: the β = 1 chains, their diagnostics, log Z and
    every tempering summary.  Burn-in (where the βs are tuned) runs in one call: the
    first checkpoint comes after it, at the first call boundary (calls of
    ceil(n_steps / 100) = 3 steps) at or after --checkpoint-every steps."""
    run = ["sample", *MIXTURE, "--sampler", "hmc", "--tempering", "3", "--reference-scale",
           "2", "--burn-in", "40", "--n-samples", "10", "--n-steps", "300",
           "--diagnostics", "--seed", "5"]
    plain = tmp_path / "plain.npz"
    assert main([*run, "--out", str(plain)]) == 0
    data = load(plain)
    assert data["diag_index_process"].shape == (300, 10, 3)
    assert data["diag_rejection_history"].shape == (1, 2)  # one round in 40 steps
    # The first kept step of each call judged by the call's count of accepted steps.
    np.testing.assert_array_equal(data["diag_accepted"].sum(axis=0), data["diag_n_accepted"])

    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    saves = interrupt_at_save.run(2, [*run, "--out", str(out)], ck, 20)
    assert saves == [40 + 21, 40 + 42] and not out.exists()
    saved = json.loads(str(npebm.io.load_state(ck)["cli_settings"]))
    assert (saved["tempering"], saved["reference_scale"]) == (3, 2.0)
    capsys.readouterr()
    for flag, value in (("--tempering", "4"), ("--reference-scale", "1")):
        line = in_process_error(capsys, ["sample", "--resume", str(ck), flag, value])
        assert f"{flag} {float(value) if flag[2] == 'r' else value} differs" in line, line
    assert main(["sample", "--resume", str(ck), "--tempering", "3"]) == 0
    assert "at step 82 of 340" in capsys.readouterr().out
    assert_same_files(plain, out)


@pytest.mark.parametrize("args, words", [
    (["--tempering", "1"], ["--tempering", "integer >= 2", "'1'"]),
    (["--tempering", "two"], ["--tempering", "integer >= 2", "'two'"]),
    (["--reference-scale", "2"], ["--reference-scale", "use it with --tempering"]),
    (["--tempering", "3", "--reference-scale", "0"], ["--reference-scale", "positive"]),
    (["--tempering", "3", "--adapt", "diag"], ["--adapt diag", "--tempering",
                                               "--adapt step_size"]),
])
def test_tempering_errors_are_one_line(tmp_path, capsys, args, words):
    out = tmp_path / "x.npz"
    line = in_process_error(capsys, ["sample", *MIXTURE, "--sampler", "hmc", "--n-samples",
                                     "4", "--n-steps", "4", *args, "--out", str(out)])
    for word in words:
        assert word in line, (word, line)
    assert not out.exists()
