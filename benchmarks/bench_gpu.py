"""GPU sampler throughput: npebm on CUDA against TorchEBM on CUDA, for a device machine.

Not a test: prints markdown tables of chain-steps per second (chains x steps; for HMC a
step is one proposal), the median of ``--repeats`` timed runs after one warm-up run
(which includes compilation and is reported on its own), the speed-up of every
contender over TorchEBM's eager sampler, and, for a trajectory-writing run, the bytes
moved, the achieved GB/s and the fraction of the GPU's peak memory bandwidth.  Ends
with the two goals of the GPU issue as PASS / FAIL lines.

Contenders, each in its own child process (as in ``bench_samplers.py``), so that torch
and CuPy never share a process or a CUDA context:

- ``npebm``: ``LangevinDynamics`` / ``HamiltonianMonteCarlo`` with ``device="cuda"``,
  ``dtype=np.float32``, the built-in ``GaussianEnergy`` / ``DoubleWellEnergy``, and x0
  a CuPy array on the device: ``sampler.sample(x=x0, n_steps=...)``.  One GPU thread per
  chain, all steps of a chunk inside one kernel launch.
- ``torchebm``: TorchEBM's eager ``LangevinDynamics`` / ``HamiltonianMonteCarlo`` with
  ``GaussianModel`` / ``DoubleWellModel`` (autograd gradients) on ``device="cuda"``, a
  CUDA ``torch.Generator``.  The reference of every "vs torchebm" column.
- ``torchebm-triton``: TorchEBM's Triton proof of concept
  (``torchebm.cuda.fused_langevin``): per step ``g = model.gradient(x)`` (autograd) and
  ``fused_langevin_step(x, g, ..., out=x)``, one fused kernel for noise + update
  (Langevin workloads only).
- ``torchebm-triton-chain``: the same module's ``doublewell_langevin_chain``, the whole
  chain in one Triton kernel with the analytic double-well gradient (W3 only).

A contender whose dependencies are missing (CuPy, a GPU, numba-cuda, torch with CUDA,
Triton) is skipped with its reason; a workload a contender has no version of is skipped
for it with the reason.  Nothing of this is an error: the script exits 0.

Workloads: W1-W5 of ``bench_samplers.WORKLOADS`` (kind, target, steps, step size,
leapfrog steps are imported from there, not copied), all float32, each run at every
chain count of ``--chains`` (default 100 000 and 1 000 000):

- W1  Langevin, 2-D Gaussian (mean [1, -1], cov [[1, .5], [.5, 2]]), 1 000 steps, step 0.01.
- W2  HMC, the same target, 100 proposals of 10 leapfrog steps of 0.1.
- W3  Langevin, DoubleWellEnergy(barrier_height=2, b=1) in 2-D, 1 000 steps, step 0.01.
- W4  Langevin, 100-d Gaussian (cov = A A^T / 100 + I), 1 000 steps, step 0.01.
- W5  HMC on W4's target, 100 proposals of 10 leapfrog steps of 0.05.
- W1+traj  W1 again with ``return_trajectory=True`` (npebm and TorchEBM eager), ``thin``
  the smallest integer for which the float32 trajectory, n x (steps // thin) x d x 4
  bytes, fits in ``--traj-mem-fraction`` (default 0.25) of the device's total memory.

Bandwidth of the trajectory-writing case.  "bytes moved" is a model of the traffic a
run cannot avoid, counted per run as::

    n * k * d * 4                    the kept trajectory, written once (k = steps // thin)
  + L * n * 2 * (8 d + 36)           the chain state, read once and written once per launch

where L is the number of kernel launches of the run (npebm splits a run into chunks,
one launch each; the script counts the launches by wrapping
``npebm.samplers._cuda.CudaRunner._launch``) and the per-chain state is what npebm's
kernel carries from one launch to the next: x and its gradient (2 x 4d bytes), the
energy (4), the Philox stream position (8), and the divergence count, accepted count
and last acceptance probability (3 x 8 = 24).  Those three counters are updated in
global memory at every step; the model counts them once per launch, i.e. as if those
updates stayed in the L2 cache.  It also leaves out what does not grow with the work
(step-size and kept-index tables), the copy of x0 that ``sample()`` makes (2 n d 4
bytes), and npebm's per-thread scratch rows, which live in global memory and are
touched every step.  So it is a lower bound on the DRAM traffic: "GB/s" = bytes moved /
median wall time of a whole ``sample()`` call, and "% of peak" = that over the peak
bandwidth ``memoryClockRate`` (kHz) x 1000 x 2 (double data rate) x ``memoryBusWidth``
/ 8 bytes/s from ``cupy.cuda.runtime.getDeviceProperties(0)`` (or the same two device
attributes where a CUDA 13 build no longer has those fields).  TorchEBM's trajectory
row uses the same model with L = 1 and a state of x alone (n * 2 * 4d bytes); its real
traffic is many times that (every step reads and writes x several times).

Timing.  npebm: ``cupy.cuda.Device().synchronize()`` before and after each run; torch:
``torch.cuda.synchronize()``.  A run is the whole public call (argument checks, the
copy of x0, all launches), from a synchronised device to a synchronised device.  Timed
runs go in rounds: in round r every contender does one run, in an order rotated by r,
as in ``bench_samplers.py``.  A contender whose warm-up took long gets fewer timed runs
(at most ``--max-seconds`` per workload row, at least one).

Sanity columns: "mean err" is the largest |mean over chains - target mean| of the
final states (of the last kept states for a trajectory) of the warm-up run; "accept"
is the HMC acceptance rate from one more, untimed, run with diagnostics (only when the
warm-up took under 10 s).

Goals (the GPU issue), printed as PASS / FAIL / n/a lines:

1. npebm >= 5x TorchEBM eager on CUDA on W1 at 10^6 chains (chain-steps/s ratio).
2. npebm's trajectory-writing run (W1+traj) reaches >= 50 % of the peak memory
   bandwidth (at the largest chain count measured).

Run on a device machine (CuPy there: ``pip install -e .[cuda]``, which pulls
``cupy-cuda12x`` and ``numba-cuda``; or ``pip install cupy-cuda12x numba-cuda`` into an
existing env; the torch contenders in their own env with a CUDA build of torch,
TorchEBM and, for the Triton rows, ``triton``)::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_gpu.py
        [--chains 100000,1000000] [--workloads W1,W2] [--repeats 5]
        [--contenders npebm,torchebm,torchebm-triton,torchebm-triton-chain]
        [--peer-python /path/to/torch-cuda-env/bin/python] [--json results.json]

The GPU is device 0 (choose another with ``CUDA_VISIBLE_DEVICES``).  The whole table
at both chain counts takes several minutes; split it with ``--workloads`` / ``--chains``
where a command has a time limit.  ``--smoke`` runs tiny sizes (256 chains, 20 steps;
16 chains and fewer steps for the 100-d targets, 4 HMC proposals) to exercise the
script itself, also without a GPU under Numba's CUDA simulator (npebm only; arrays are
then NumPy, there is no CuPy, and synchronisation and the bandwidth peak are no-ops /
"n/a")::

    NUMBA_ENABLE_CUDASIM=1 NUMBA_CACHE_DIR=$(mktemp -d) \\
        python benchmarks/bench_gpu.py --smoke --contenders npebm
"""
import argparse
import datetime
import gc
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from _harness import Child  # benchmarks/ is sys.path[0]

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_samplers as bs  # noqa: E402  (the workload table; it imports NumPy only)

F32 = np.float32
CONTENDERS = ("npebm", "torchebm", "torchebm-triton", "torchebm-triton-chain")
PEERS = ("torchebm", "torchebm-triton", "torchebm-triton-chain")
REFERENCE = "torchebm"
TORCH_DEVICE = "cuda"
GPU_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
TRAJ_WORKLOAD = "W1"
GOAL_CHAINS = 1_000_000
GOAL_SPEEDUP = 5.0
GOAL_BANDWIDTH = 0.5
SMOKE_CHAINS = 256
SMOKE_STEPS = {"langevin": 20, "hmc": 4}
ACCEPT_MAX_WARM_S = 10.0
STATE_BYTES_FIXED = 36  # energy 4 + stream position 8 + three 8-byte per-chain counters


class Skip(Exception):
    """A contender cannot run on this machine (missing dependency or device)."""


# ---------------------------------------------------------------------------------
# Workloads

def gpu_workloads(names, chains, smoke):
    """W1-W5 of ``bench_samplers.WORKLOADS`` at each chain count, as ``Workload``\\ s.

    Parameters
    ----------
    names : list of str
        Workload names among ``GPU_WORKLOADS``.
    chains : list of int
        Chain counts; every workload runs at each.
    smoke : bool
        Tiny sizes: the steps of ``SMOKE_STEPS``; the 100-d targets get a sixteenth of
        the chains and a quarter of the steps (they are slow under the simulator).

    Returns
    -------
    list of bench_samplers.Workload
    """
    table = {w.name: w for w in bs.WORKLOADS}
    out = []
    for name in names:
        w = table[name]
        for n in chains:
            steps = w.steps
            if smoke:
                steps = SMOKE_STEPS[w.kind]
                if bs.target_dim(w.target) > 2:
                    n, steps = max(1, n // 16), max(1, steps // 4)
            out.append(bs.Workload(w.name, w.kind, w.target, n, steps, w.step_size,
                                   w.n_leapfrog))
    return out


def choose_thin(w, mem_bytes, fraction):
    """The smallest ``thin`` whose float32 trajectory fits in ``fraction`` of ``mem_bytes``.

    Parameters
    ----------
    w : bench_samplers.Workload
    mem_bytes : int or None
        Device memory; None means unknown (then ``thin=1``).
    fraction : float

    Returns
    -------
    int or None
        None when even one kept step per chain does not fit.
    """
    d = bs.target_dim(w.target)
    full = w.chains * w.steps * d * 4
    if not mem_bytes:
        return 1
    budget = fraction * mem_bytes
    thin = max(1, math.ceil(full / budget))
    while thin <= w.steps and w.chains * (w.steps // thin) * d * 4 > budget:
        thin += 1
    return thin if thin <= w.steps else None


def bytes_moved(w, thin, launches, state_only_x=False):
    """Bytes a trajectory-writing run cannot avoid moving (see the module docstring).

    Parameters
    ----------
    w : bench_samplers.Workload
    thin : int
    launches : float
        Kernel launches of the run (chunks); the state is read and written once each.
    state_only_x : bool
        Count x alone as the state (TorchEBM's rows) instead of npebm's per-chain state.

    Returns
    -------
    float
    """
    n, d = w.chains, bs.target_dim(w.target)
    traj = n * (w.steps // thin) * d * 4
    per_chain = 4 * d if state_only_x else 8 * d + STATE_BYTES_FIXED
    return float(traj + launches * n * 2 * per_chain)


# ---------------------------------------------------------------------------------
# Device facts (worker side)

def _version(dist, module=None):
    """Installed version of a distribution, or of an importable module, or None."""
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        pass
    try:
        return getattr(importlib.import_module(module or dist), "__version__", None)
    except Exception:
        return None


def _cuda_version(v):
    """CUDA's integer version (12040) as text ("12.4")."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def cupy_device_info(cupy, index=0):
    """Name, memory and peak memory bandwidth of a GPU, from CuPy.

    The peak is ``memoryClockRate`` (kHz) x 1000 x 2 x ``memoryBusWidth`` / 8 bytes/s;
    where the properties lack those fields (CUDA 13 removed them from the struct) the
    device attributes ``cudaDevAttrMemoryClockRate`` (36) and
    ``cudaDevAttrGlobalMemoryBusWidth`` (37) give the same numbers.

    Returns
    -------
    dict
        ``gpu``, ``mem_bytes``, ``mem_clock_khz``, ``bus_bits``, ``peak_bytes_s`` (None
        when unknown), ``driver``, ``cuda_runtime``.
    """
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(index)
    name = props.get("name", b"?")
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    clock, bus = props.get("memoryClockRate"), props.get("memoryBusWidth")
    try:
        clock = clock or rt.deviceGetAttribute(36, index)
        bus = bus or rt.deviceGetAttribute(37, index)
    except Exception:
        pass
    peak = clock * 1e3 * 2 * bus / 8 if clock and bus else None
    info = {"gpu": name, "mem_bytes": int(props.get("totalGlobalMem", 0)) or None,
            "mem_clock_khz": clock, "bus_bits": bus, "peak_bytes_s": peak,
            "compute_capability": f"{props.get('major', '?')}.{props.get('minor', '?')}"}
    try:
        info["driver"] = "CUDA driver API " + _cuda_version(rt.driverGetVersion())
        info["cuda_runtime"] = _cuda_version(rt.runtimeGetVersion())
    except Exception:
        pass
    return info


def _to_host(a):
    """A NumPy copy of a NumPy, CuPy or torch array."""
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


# ---------------------------------------------------------------------------------
# Contenders (worker side).  prepare(w, traj, thin) returns a zero-argument callable
# that runs the whole workload and returns its result on the device (asynchronously:
# the worker synchronises around it).

class NpebmContender:
    """npebm's samplers with ``device="cuda"`` (or Numba's CUDA simulator).

    Raises
    ------
    Skip
        With "no GPU/CuPy: <reason>" when CuPy, a visible GPU or numba-cuda is missing.
    """

    def __init__(self):
        import npebm
        from npebm.backend import get_backend, simulator_enabled

        self.sim = simulator_enabled()
        self.cupy = None
        if not self.sim:
            try:
                import cupy
            except ImportError as exc:
                raise Skip(f"no GPU/CuPy: CuPy is not importable ({exc}); on a device "
                           "machine `pip install -e .[cuda]` (or cupy-cuda12x)") from None
            try:
                count = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:
                raise Skip(f"no GPU/CuPy: no CUDA device is visible "
                           f"({type(exc).__name__}: {exc})") from None
            if count == 0:
                raise Skip("no GPU/CuPy: CuPy sees 0 CUDA devices")
            self.cupy = cupy
        try:
            self.backend = get_backend("cuda")
        except (ImportError, RuntimeError) as exc:
            raise Skip(f"no GPU/CuPy: {exc}") from None
        self.xp = self.backend.xp
        self.launches = 0
        self._count_launches()
        self.info = {"npebm": getattr(npebm, "__version__", "?"), "numpy": np.__version__,
                     "numba": _version("numba"), "numba-cuda": _version("numba-cuda"),
                     "cupy": _version("cupy", "cupy") if self.cupy is not None else None}
        if self.sim:
            self.info["gpu"] = ("Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): kernels run "
                                "as Python on the CPU, NumPy arrays stand in for CuPy")
            self.info["peak_bytes_s"] = None
        else:
            self.info.update(cupy_device_info(self.cupy))

    def _count_launches(self):
        """Wrap ``CudaRunner._launch`` to count kernel launches (None if it moved)."""
        try:
            from npebm.samplers import _cuda
        except ImportError:
            self.launches = None
            return
        original = getattr(_cuda.CudaRunner, "_launch", None)
        if original is None:
            self.launches = None
            return

        def counted(runner, *args, **kwargs):
            self.launches += 1
            return original(runner, *args, **kwargs)

        _cuda.CudaRunner._launch = counted

    def sync(self):
        """Wait for the GPU (a no-op under the simulator, where launches are blocking)."""
        if self.cupy is not None:
            self.cupy.cuda.Device().synchronize()

    def release(self):
        """Drop the last workload's arrays and return CuPy's pooled memory."""
        self.sampler = self.x0 = None
        gc.collect()
        if self.cupy is not None:
            self.cupy.get_default_memory_pool().free_all_blocks()

    def prepare(self, w, traj, thin):
        from npebm.energies import DoubleWellEnergy, GaussianEnergy
        from npebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

        if w.target == "double_well":
            h, b = bs.target_params("double_well")
            energy = DoubleWellEnergy(barrier_height=h, b=b)
        else:
            energy = GaussianEnergy(*bs.target_params(w.target))
        common = dict(device="cuda", dtype=np.float32, seed=0)
        if w.kind == "langevin":
            s = LangevinDynamics(energy, step_size=w.step_size, noise_scale=1.0, **common)
        else:
            s = HamiltonianMonteCarlo(energy, step_size=w.step_size,
                                      n_leapfrog_steps=w.n_leapfrog, **common)
        with self.backend.context():
            x0 = self.xp.asarray(bs.initial_states(w))
        kw = dict(return_trajectory=True, thin=thin) if traj else {}
        self.sampler, self.x0 = s, x0
        return lambda: s.sample(x=x0, n_steps=w.steps, **kw)

    def extra(self, w, traj):
        """HMC acceptance from one more (untimed) run with diagnostics."""
        if w.kind != "hmc" or traj or self.warm_s > ACCEPT_MAX_WARM_S:
            return {}
        from npebm import to_numpy

        _, d = self.sampler.sample(x=self.x0, n_steps=w.steps, return_diagnostics=True)
        return {"accept": float(np.mean(to_numpy(d["acceptance_rate"])))}


class TorchebmContender:
    """TorchEBM on CUDA: eager samplers, or its Triton fused Langevin kernels.

    Parameters
    ----------
    variant : {"torchebm", "torchebm-triton", "torchebm-triton-chain"}

    Raises
    ------
    Skip
        When torch, CUDA, TorchEBM or (for the Triton variants) its
        ``torchebm.cuda.fused_langevin`` module is not usable.
    """

    launches = None

    def __init__(self, variant):
        try:
            import torch
        except ImportError as exc:
            raise Skip(f"torch is not importable ({exc})") from None
        if not torch.cuda.is_available():
            raise Skip(f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                       f"built for CUDA {torch.version.cuda})")
        try:
            import torchebm
        except ImportError as exc:
            raise Skip(f"torchebm is not importable ({exc})") from None
        self.fused = None
        if variant != "torchebm":
            try:
                self.fused = importlib.import_module("torchebm.cuda.fused_langevin")
            except Exception as exc:
                raise Skip("TorchEBM's Triton fused Langevin (torchebm.cuda.fused_langevin) "
                           f"is not importable: {type(exc).__name__}: {exc}") from None
        self.torch, self.variant = torch, variant
        props = torch.cuda.get_device_properties(0)
        self.info = {"torch": torch.__version__, "torch CUDA": torch.version.cuda,
                     "torchebm": getattr(torchebm, "__version__", "?"),
                     "triton": _version("triton"), "gpu": torch.cuda.get_device_name(0),
                     "mem_bytes": int(props.total_memory)}

    def sync(self):
        self.torch.cuda.synchronize()

    def release(self):
        self.sampler = self.x0 = self.gen = self.model = None
        gc.collect()
        self.torch.cuda.empty_cache()

    def _model(self, w):
        torch = self.torch
        from torchebm.core import DoubleWellModel, GaussianModel

        f32 = torch.float32
        if w.target == "double_well":
            h, b = bs.target_params("double_well")
            return DoubleWellModel(barrier_height=h, b=b, dtype=f32, device=TORCH_DEVICE)
        mean, cov = bs.target_params(w.target)
        return GaussianModel(torch.tensor(mean, dtype=f32, device=TORCH_DEVICE),
                             torch.tensor(cov, dtype=f32, device=TORCH_DEVICE),
                             dtype=f32, device=TORCH_DEVICE)

    def prepare(self, w, traj, thin):
        torch = self.torch
        self.x0 = x0 = torch.from_numpy(bs.initial_states(w)).to(TORCH_DEVICE)
        if self.variant == "torchebm":
            return self._prepare_eager(w, traj, thin)
        if w.kind != "langevin":
            raise bs.Unsupported("TorchEBM's Triton kernels are Langevin only")
        if traj:
            raise bs.Unsupported("TorchEBM's Triton kernels write no trajectory")
        eta, fl = w.step_size, self.fused
        if self.variant == "torchebm-triton-chain":
            if w.target != "double_well":
                raise bs.Unsupported("doublewell_langevin_chain is for the double well (W3) "
                                     "only")
            h, b = bs.target_params("double_well")
            return lambda: fl.doublewell_langevin_chain(x0.clone(), w.steps, eta, 1.0, h, b,
                                                        seed=0)
        self.model = model = self._model(w)

        def run():
            x = x0.clone()
            for i in range(w.steps):
                g = model.gradient(x)
                fl.fused_langevin_step(x, g, eta, 1.0, seed=i, out=x)
            return x
        return run

    def _prepare_eager(self, w, traj, thin):
        torch = self.torch
        from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

        model, f32 = self._model(w), torch.float32
        if w.kind == "langevin":
            s = LangevinDynamics(model, step_size=w.step_size, noise_scale=1.0, dtype=f32,
                                 device=TORCH_DEVICE)
        else:
            s = HamiltonianMonteCarlo(model, step_size=w.step_size,
                                      n_leapfrog_steps=w.n_leapfrog, dtype=f32, device=TORCH_DEVICE)
        gen = torch.Generator(device=TORCH_DEVICE).manual_seed(0)
        x0 = self.x0
        kw = dict(return_trajectory=True, thin=thin) if traj else {}
        self.sampler, self.gen = s, gen
        return lambda: s.sample(x=x0.clone(), n_steps=w.steps, generator=gen, **kw)

    def extra(self, w, traj):
        """HMC acceptance from one more (untimed) run with diagnostics, if not too slow."""
        if self.variant != "torchebm" or w.kind != "hmc" or traj:
            return {}
        if self.warm_s > ACCEPT_MAX_WARM_S:
            return {}
        _, d = self.sampler.sample(x=self.x0.clone(), n_steps=w.steps, generator=self.gen,
                                   return_diagnostics=True)
        return {"accept": float(d["acceptance_rate"].float().mean())}


def make_contender(name):
    if name == "npebm":
        return NpebmContender()
    if name in PEERS:
        return TorchebmContender(name)
    raise Skip(f"unknown contender {name!r} (choose from {', '.join(CONTENDERS)})")


# ---------------------------------------------------------------------------------
# Worker process: a JSON-lines loop on stdin / a private copy of stdout

def _clean(v):
    """A JSON-safe copy: NaN and inf become None, NumPy scalars Python ones."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def worker_main(name):
    """Serve one contender: ``prepare`` / ``run`` / ``finish`` / ``quit`` messages."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol

    def reply(**kw):
        proto.write(json.dumps({k: _clean(v) for k, v in kw.items()}) + "\n")

    try:
        contender = make_contender(name)
    except Skip as exc:
        reply(ok=False, reason=str(exc))
        return
    except Exception as exc:  # an API mismatch, a broken install
        reply(ok=False, reason=f"{type(exc).__name__}: {exc}")
        return
    reply(ok=True, info=contender.info)
    run = w = traj = None
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg["op"]
        try:
            if op == "prepare":
                run = None
                contender.release()
                w, traj, thin = bs.Workload(**msg["workload"]), msg["traj"], msg["thin"]
                run = contender.prepare(w, traj, thin)
                contender.sync()
                n0 = contender.launches
                t0 = time.perf_counter()
                out = run()  # warm-up: compilation, first touch of memory
                contender.sync()
                warm_s = contender.warm_s = time.perf_counter() - t0
                launches = None if n0 is None else contender.launches - n0
                x = _to_host(out[:, -1] if traj else out).astype(np.float64)
                out = None
                err = float(np.max(np.abs(x.mean(axis=0) - bs.target_mean(w.target))))
                reply(ok=True, warm_s=warm_s, mean_err=err, finite=bool(np.all(np.isfinite(x))),
                      launches=launches)
            elif op == "run":
                contender.sync()
                n0 = contender.launches
                t0 = time.perf_counter()
                out = run()
                contender.sync()
                seconds = time.perf_counter() - t0
                out = None
                reply(ok=True, seconds=seconds,
                      launches=None if n0 is None else contender.launches - n0)
            elif op == "finish":
                try:
                    extra = contender.extra(w, traj)
                except Exception:  # acceptance is a sanity column, not what is measured
                    extra = {}
                run = None
                contender.release()
                reply(ok=True, extra=extra)
            elif op == "quit":
                reply(ok=True)
                return
        except bs.Unsupported as exc:
            run = None
            reply(ok=False, reason=str(exc))
        except Exception as exc:  # CUDA out of memory, a failed launch
            run = None
            reply(ok=False, reason=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------
# Parent: drives the workers in rotated rounds, prints the tables

def nvidia_smi():
    """``nvidia-smi``'s GPU lines (name, driver, memory), or why there are none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ["nvidia-smi: not found"]
    try:
        r = subprocess.run([exe, "--query-gpu=index,name,driver_version,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return [f"nvidia-smi: failed ({exc})"]
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    if r.returncode or not lines:
        return [f"nvidia-smi: exit {r.returncode}: {(r.stderr or r.stdout).strip()[:200]}"]
    return [f"nvidia-smi GPU {ln}" for ln in lines]


def host_lines():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return [f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"host: {cpu}, {os.cpu_count()} logical CPUs, {mem_gb:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}"]


def device_facts(hellos):
    """GPU name, memory and peak bandwidth from the workers' greetings (npebm's first).

    Returns
    -------
    dict
        ``gpu``, ``mem_bytes``, ``peak_bytes_s``, ``source``; values None when unknown.
    """
    facts = {"gpu": None, "mem_bytes": None, "peak_bytes_s": None, "source": None}
    for name in ("npebm",) + PEERS:
        info = hellos.get(name)
        if not info:
            continue
        for key in ("gpu", "mem_bytes", "peak_bytes_s"):
            if facts[key] is None and info.get(key) is not None:
                facts[key] = info[key]
                facts["source"] = facts["source"] or name
    return facts


def _fmt(v, spec, missing="-"):
    return missing if v is None or (isinstance(v, float) and not math.isfinite(v)) \
        else format(v, spec)


def markdown(header, rows):
    """A markdown table: header cells, then rows of cells (already strings)."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def run_case(children, w, traj, thin, repeats, max_seconds):
    """Warm up and time every child on one workload; one result dict per contender."""
    label = f"{w.name}+traj" if traj else w.name
    what = w.describe()[len(w.name) + 2:]  # describe() starts with "W1: "
    if traj:
        what += f", return_trajectory=True, thin={thin}"
    print(f"\n{label}: {what}", flush=True)
    results, active = {}, []
    for name, child in children.items():
        r = child.ask(op="prepare", workload=w.as_dict(), traj=traj, thin=thin)
        row = dict(w=w.name, case=label, traj=traj, thin=thin if traj else None,
                   chains=w.chains, steps=w.steps, kind=w.kind, c=name, times=[],
                   launches=[])
        results[name] = row
        if not r.get("ok"):
            row["skipped"] = r.get("reason")
            print(f"  {name}: skipped: {r.get('reason')}", flush=True)
            continue
        row.update(warm_s=r["warm_s"], mean_err=r["mean_err"], finite=r["finite"],
                   warm_launches=r.get("launches"))
        row["runs"] = max(1, min(repeats, int(max_seconds // max(r["warm_s"], 1e-9))))
        active.append(name)
        print(f"  {name}: warm-up {r['warm_s']:.3f} s (compilation included on first use)"
              + (f", {row['runs']} timed runs" if row["runs"] < repeats else ""), flush=True)
    for rnd in range(repeats):
        k = rnd % max(1, len(active))
        for name in active[k:] + active[:k]:
            row = results[name]
            if len(row["times"]) >= row["runs"] or "error" in row:
                continue
            r = children[name].ask(op="run")
            if r.get("ok"):
                row["times"].append(r["seconds"])
                row["launches"].append(r.get("launches"))
            else:
                row["error"] = r.get("reason")
    for name in active:
        row = results[name]
        r = children[name].ask(op="finish")
        row.update(r.get("extra", {}) if r.get("ok") else {})
        if row["times"]:
            med = statistics.median(row["times"])
            row["median_s"] = med
            row["rate"] = w.chains * w.steps / med
            row["spread"] = (max(row["times"]) - min(row["times"])) / med
            print(f"  {name}: {row['rate']:.3g} chain-steps/s (median {med * 1e3:.2f} ms "
                  f"of {len(row['times'])}, spread {100 * row['spread']:.0f}%)", flush=True)
        elif "error" in row:
            print(f"  {name}: failed: {row['error']}", flush=True)
    return list(results.values())


def add_bandwidth(rows, w, thin, peak):
    """Bytes moved, GB/s and fraction of peak for the trajectory rows (in place)."""
    for row in rows:
        if "median_s" not in row:
            continue
        counted = [n for n in row["launches"] if n is not None]
        if row["c"] == "npebm":
            if not counted:
                continue  # launches unknown: no byte count
            launches = statistics.median(counted)
            row["bytes"] = bytes_moved(w, thin, launches)
        else:
            launches = 1
            row["bytes"] = bytes_moved(w, thin, 1, state_only_x=True)
        row["run_launches"] = launches
        row["traj_bytes"] = float(w.chains * (w.steps // thin) * bs.target_dim(w.target) * 4)
        row["gb_s"] = row["bytes"] / row["median_s"] / 1e9
        row["peak_fraction"] = row["bytes"] / row["median_s"] / peak if peak else None


def goal_lines(results, chains, traj_rows, skipped):
    """The two goals of the GPU issue as PASS / FAIL / n/a lines, and their records."""
    out = []

    def rate(case, n, c):
        for row in results:
            if row["case"] == case and row["chains"] == n and row["c"] == c:
                return row.get("rate")
        return None

    ours, ref = rate("W1", GOAL_CHAINS, "npebm"), rate("W1", GOAL_CHAINS, REFERENCE)
    what = f"goal 1: W1 at {GOAL_CHAINS:,} chains, npebm >= {GOAL_SPEEDUP:g}x TorchEBM eager"
    if GOAL_CHAINS not in chains:
        out.append((what, "n/a", f"W1 not measured at {GOAL_CHAINS} chains"))
    elif ours is None:
        out.append((what, "n/a", "npebm has no W1 rate at that size"
                    + (f": {skipped['npebm']}" if "npebm" in skipped else "")))
    elif ref is None:
        out.append((what, "n/a", "TorchEBM eager has no W1 rate at that size"
                    + (f": {skipped[REFERENCE]}" if REFERENCE in skipped else "")))
    else:
        ratio = ours / ref
        out.append((what, "PASS" if ratio >= GOAL_SPEEDUP else "FAIL",
                    f"{ratio:.2f}x: npebm {ours:.3g} vs torchebm {ref:.3g} chain-steps/s"))
    what = (f"goal 2: writing trajectories (W1+traj), npebm >= {100 * GOAL_BANDWIDTH:.0f}% "
            "of peak memory bandwidth")
    mine = [r for r in traj_rows if r["c"] == "npebm" and "gb_s" in r]
    if not mine:
        out.append((what, "n/a", "npebm's trajectory run was not measured"
                    + (f": {skipped['npebm']}" if "npebm" in skipped else "")))
    else:
        row = max(mine, key=lambda r: r["chains"])
        frac = row.get("peak_fraction")
        if frac is None:
            out.append((what, "n/a", f"{row['gb_s']:.3g} GB/s at {row['chains']} chains; "
                        "peak bandwidth unknown (no CuPy device properties)"))
        else:
            out.append((what, "PASS" if frac >= GOAL_BANDWIDTH else "FAIL",
                        f"{100 * frac:.1f}%: {row['gb_s']:.4g} GB/s at {row['chains']} "
                        f"chains, thin {row['thin']}"))
    return out


def print_tables(results, traj_rows, workloads, peak):
    print("\nchain-steps/s = chains x steps / median wall time of a whole sample() call "
          "(HMC: a step is one proposal); vs torchebm = rate / TorchEBM eager's rate; "
          "spread = (slowest - fastest run) / median; warm-up s = the first run "
          "(compilation included)\n")
    header = ["workload", "chains", "contender", "chain-steps/s", "vs torchebm", "median ms",
              "spread", "runs", "warm-up s", "mean err", "accept"]
    rows = []
    for w in workloads:
        mine = [r for r in results if r["case"] == w.name and r["chains"] == w.chains]
        ref = next((r.get("rate") for r in mine if r["c"] == REFERENCE), None)
        for r in mine:
            if "rate" not in r:
                continue
            flag = "" if r.get("finite", True) else " (non-finite!)"
            rows.append([w.name, str(w.chains), r["c"] + flag, f"{r['rate']:.3g}",
                         _fmt(r["rate"] / ref if ref else None, ".2f") + ("x" if ref else ""),
                         f"{r['median_s'] * 1e3:.2f}", f"{100 * r['spread']:.0f}%",
                         str(len(r["times"])), f"{r['warm_s']:.2f}",
                         _fmt(r.get("mean_err"), ".3f"), _fmt(r.get("accept"), ".2f", "")])
    print(markdown(header, rows) if rows else "(no throughput measured)")
    if not traj_rows:
        return
    print("\ntrajectory writing (W1, return_trajectory=True): bytes = trajectory written + "
          "chain state read and written once per kernel launch (see the docstring); "
          f"peak = {_fmt(peak / 1e9 if peak else None, '.1f', 'n/a')} GB/s\n")
    header = ["chains", "contender", "thin", "kept", "traj GB", "launches", "bytes GB",
              "median ms", "GB/s", "% of peak", "chain-steps/s"]
    rows = []
    for r in traj_rows:
        if "rate" not in r:
            continue
        rows.append([str(r["chains"]), r["c"], str(r["thin"]), str(r["steps"] // r["thin"]),
                     _fmt(r.get("traj_bytes", 0) / 1e9, ".3g"),
                     _fmt(r.get("run_launches"), "g"), _fmt(r.get("bytes", 0) / 1e9, ".3g"),
                     f"{r['median_s'] * 1e3:.2f}", _fmt(r.get("gb_s"), ".4g"),
                     _fmt(100 * r["peak_fraction"] if r.get("peak_fraction") else None,
                          ".1f", "n/a"),
                     f"{r['rate']:.3g}"])
    print(markdown(header, rows) if rows else "(no trajectory run measured)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", default=None,
                    help="comma-separated chain counts (default 100000,1000000; smoke 256)")
    ap.add_argument("--workloads", default=",".join(GPU_WORKLOADS),
                    help="subset of W1-W5 (W1+traj runs whenever W1 is selected)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default 5, smoke 2)")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="timed runs of one contender on one row stop at about this many "
                         "seconds (estimated from its warm-up; at least one run)")
    ap.add_argument("--traj-mem-fraction", type=float, default=0.25,
                    help="the trajectory case keeps every thin-th step, thin the smallest "
                         "for which the trajectory fits in this fraction of device memory")
    ap.add_argument("--no-traj", action="store_true", help="skip the trajectory case")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes to exercise the script (runs under NUMBA_ENABLE_CUDASIM=1)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the npebm worker")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="interpreter for the torch workers (torch with CUDA, torchebm)")
    ap.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)

    repeats = args.repeats or (2 if args.smoke else 5)
    chains_text = args.chains or (str(SMOKE_CHAINS) if args.smoke else "100000,1000000")
    try:
        chains = [int(float(c)) for c in chains_text.split(",") if c.strip()]
    except ValueError:
        ap.error(f"--chains must be comma-separated integers, got {chains_text!r}")
    wanted = [s.strip() for s in args.workloads.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in GPU_WORKLOADS]
    if unknown:
        ap.error(f"--workloads: unknown {', '.join(unknown)} (choose from W1-W5)")
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    workloads = gpu_workloads(wanted, chains, args.smoke)

    for line in host_lines() + nvidia_smi():
        print(line)
    print(f"timing: median of {repeats} runs after one warm-up run, rotated rounds, "
          "device synchronised around each run" + (" (--smoke: tiny sizes)"
                                                   if args.smoke else ""))
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0"):
        print("NUMBA_ENABLE_CUDASIM is set: npebm runs on Numba's CUDA simulator (CPU); "
              "its timings say nothing about a GPU")
    children, skipped, hellos = {}, {}, {}
    for name in names:
        child = Child(__file__, name, args.peer_python if name in PEERS else args.python)
        if child.hello.get("ok"):
            children[name] = child
            hellos[name] = info = child.hello["info"]
            vs = ", ".join(f"{k} {v}" for k, v in info.items()
                           if k not in ("gpu", "mem_bytes", "peak_bytes_s", "mem_clock_khz",
                                        "bus_bits") and v is not None)
            print(f"  {name}: {vs}")
        else:
            reason = child.hello.get("reason")
            print(f"  {name}: skipped: {reason}")
            skipped[name] = reason
            child.close()
    dev = device_facts(hellos)
    npebm_info = hellos.get("npebm", {})
    print(f"GPU: {dev['gpu'] or 'n/a (no worker reached a GPU)'}"
          + (f", {dev['mem_bytes'] / 2 ** 30:.1f} GiB" if dev["mem_bytes"] else ""))
    if npebm_info.get("mem_clock_khz") and dev["peak_bytes_s"]:
        print(f"peak memory bandwidth: {dev['peak_bytes_s'] / 1e9:.1f} GB/s = memory clock "
              f"{npebm_info['mem_clock_khz'] / 1e3:.0f} MHz x 2 x {npebm_info['bus_bits']}-bit "
              "bus / 8")
    else:
        print("peak memory bandwidth: n/a (needs CuPy's device properties)")
    for key in ("driver", "cuda_runtime", "compute_capability"):
        if npebm_info.get(key):
            print(f"{key.replace('_', ' ')}: {npebm_info[key]}")
    sys.stdout.flush()

    mem = dev["mem_bytes"]
    mem_note = "device memory"
    if mem is None:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        mem_note = "host memory (device memory unknown)"
    results, traj_rows = [], []
    if not children:
        print("\nno contender can run here; nothing measured")
    else:
        for w in workloads:
            results += run_case(children, w, False, 1, repeats, args.max_seconds)
        if TRAJ_WORKLOAD in wanted and not args.no_traj:
            for w in workloads:
                if w.name != TRAJ_WORKLOAD:
                    continue
                thin = choose_thin(w, mem, args.traj_mem_fraction)
                if thin is None:
                    print(f"\n{w.name}+traj at {w.chains} chains: skipped (not one kept step "
                          f"per chain fits in {args.traj_mem_fraction} of {mem_note})")
                    continue
                print(f"\nthin {thin}: the smallest with n x (steps // thin) x d x 4 bytes <= "
                      f"{args.traj_mem_fraction} x {mem_note} ({mem / 2 ** 30:.1f} GiB)")
                pair = {k: c for k, c in children.items() if k in ("npebm", REFERENCE)}
                rows = run_case(pair, w, True, thin, repeats, args.max_seconds)
                add_bandwidth(rows, w, thin, dev["peak_bytes_s"])
                traj_rows += rows
    for child in children.values():
        child.close()

    print_tables(results, traj_rows, workloads, dev["peak_bytes_s"])
    goals = goal_lines(results, chains, traj_rows, skipped)
    print()
    for what, verdict, detail in goals:
        print(f"{verdict}: {what} ({detail})")
    notes = [f"{name} not run: {reason}" for name, reason in skipped.items()]
    notes += [f"{r['case']} {r['chains']} {r['c']}: a run failed: {r['error']}"
              for r in results + traj_rows if "error" in r]
    notes.append("TorchEBM's HMC evaluates 2L gradients and 2 energies per proposal; npebm "
                 "carries the gradient over (L per proposal).  torchebm-triton computes each "
                 "step's gradient with TorchEBM's autograd and fuses noise + update; "
                 "torchebm-triton-chain runs the double well's whole chain in one kernel.")
    notes.append("mean err = max |mean over chains of the warm-up run's final states - "
                 "target mean| (a sanity check: ULA's bias and Monte Carlo error included)")
    for n in notes:
        print("note:", n)
    if args.json:
        record = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "host": host_lines()[1], "nvidia_smi": nvidia_smi(), "device": dev,
                  "args": vars(args), "repeats": repeats, "contenders": hellos,
                  "skipped": skipped, "results": results, "trajectory": traj_rows,
                  "goals": [dict(goal=g, verdict=v, detail=d) for g, v, d in goals]}
        with open(args.json, "w") as fh:
            json.dump(_clean(record), fh, indent=1, default=str)
        print(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
