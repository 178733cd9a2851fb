"""CUDA kernels for the samplers: one thread per chain, the whole step loop inside.

Each sampler's step loop is the same ``run_block`` source as its CPU kernel
(``_build_run_block`` in its module), compiled by numba-cuda as a device function and
called by every thread on a block of one row: its own chain.  The energy enters as
``rows(X, G, E, params)``, which applies the energy's per-point kernel (a built-in's
``register_jitable`` kernel or the user's ``CompiledEnergy`` function) row by row; the
random streams are the CPU's Philox streams, keyed by (seed, global chain index).  So a
float64 run matches the CPU run with the same seed to rounding, and bit for bit under
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which runs the same Python source.

Arrays are CuPy arrays on a GPU; under the simulator NumPy arrays stand in (``xp``).
Imported on the first CUDA run only.
"""
import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside kernels

# The compiled energy on the device is the energies' business: evaluation and the
# per-point pieces live in npebm.energies._cuda_eval; re-exported here for the
# kernels below and for code that imports them from this module.
from ..energies._cuda_eval import (  # noqa: F401
    _USER_POINTS,
    _build_evaluate,
    _compile_errors,
    _device_params,
    _device_point,
    _launch,
    device_rows,
    evaluate,
    simulated,
)

_KERNELS = {}


def _build(module, point):
    from numba.extending import register_jitable

    # The energy's per-point kernel over a block's rows (see device_rows).
    run_block = module._build_run_block(register_jitable(device_rows(point)), True)
    thread_scratch = register_jitable(module._thread_scratch)

    @cuda.jit
    def kernel(params, X, G, E, have_grad, pos, k0, k1, chain_offset, s0, s1, keep, extra,
               outs, base, scratch):
        i = cuda.grid(1)
        if i >= X.shape[0]:
            return
        xb, gb, eb, xn, gn, en, pb, bufs = base
        # Block index 0 and no across-chain moments: the driver reduces those from the
        # kept states, so no thread waits for another.
        run_block(0, i, None, params, X, G, E, have_grad, pos, k0, k1, chain_offset + i, s0,
                  s1, keep, *extra, *outs, xb[i:i + 1], gb[i:i + 1], eb[i:i + 1],
                  xn[i:i + 1], gn[i:i + 1], en[i:i + 1], pb[i:i + 1], bufs[i:i + 1],
                  *thread_scratch(scratch, i))

    return kernel


def kernel_for(sampler, energy):
    """``(kernel, module)``: the CUDA kernel of ``sampler``'s type for ``energy``'s
    per-point function, and the sampler's module (its scratch layout)."""
    import sys

    module = sys.modules[type(sampler)._build_kernel.__module__]
    key = (module.__name__, energy.point_function)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _build(module, _device_point(energy))
    return kernel, module


def _build_fill(kind):
    from .. import _philox

    fill_row = _philox.fill_normal_row if kind == "normal" else _philox.fill_uniform_row
    sync = _philox.sync

    @cuda.jit
    def fill(k0, k1, sid, chain_offset, pos, bufs, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            chain = np.uint64(chain_offset) + np.uint64(i)
            p = pos[i]
            buf = bufs[i]
            sync(k0, k1, chain, sid, p, buf)
            pos[i] = fill_row(k0, k1, chain, sid, p, buf, out[i])

    return fill


def _fill(kind, k0, k1, sid, chain_offset, pos, out):
    """The device counterpart of ``_philox.fill_normal`` / ``fill_uniform``: row i of
    ``out`` (n, m) gets the next m draws of chain ``chain_offset + i``; ``pos`` (n,)
    advances in place.  Same streams, same numbers, one thread per chain."""
    from ..backend import array_namespace

    key = ("fill", kind)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _build_fill(kind)
    n = out.shape[0]
    if n:
        bufs = array_namespace(out).empty((n, 4), np.uint32)
        kernel[_launch(n)](np.uint64(k0), np.uint64(k1), np.uint64(sid),
                           np.uint64(chain_offset), pos, bufs, out)


def fill_normal(k0, k1, sid, chain_offset, pos, out):
    """Standard normals into ``out`` (n, m); see ``npebm._philox.fill_normal``."""
    _fill("normal", k0, k1, sid, chain_offset, pos, out)


def fill_uniform(k0, k1, sid, chain_offset, pos, out):
    """Uniforms in [0, 1) into ``out`` (n, m); see ``npebm._philox.fill_uniform``."""
    _fill("uniform", k0, k1, sid, chain_offset, pos, out)


def kept_moments(x, mean, var):
    """Mean and variance (ddof 0) across chains of kept states ``x`` (n, k, dim), into
    ``mean`` and ``var`` (k, dim), in float64 and in two passes (the CPU kernels' shifted
    sums agree to rounding)."""
    x = x.astype(np.float64)
    m = x.mean(axis=0)
    mean[...] = m
    var[...] = ((x - m) ** 2).mean(axis=0)


class CudaRunner:
    """Runs chunks of steps through the sampler's CUDA kernel (the CPU ``_FusedRunner``'s
    interface): state and outputs stay in ``xp`` arrays on the device.

    Threads never share an accumulator, so the across-chain mean and variance of each
    kept step come from the kept states after each launch (``out["mean"]``,
    ``out["var"]``).  Without a trajectory those states go to a bounded scratch buffer,
    ``MOMENT_BUFFER`` values at most, and a chunk is split into launches that fit.
    """

    #: Values (n × kept steps × dim) of the scratch trajectory behind diagnostics.
    MOMENT_BUFFER = 1 << 25

    def __init__(self, sampler, st, schedule, out, backend):
        self.backend = backend
        xp = self.xp = backend.xp
        dtype = st.x.dtype
        self.kernel, module = kernel_for(sampler, sampler.energy)
        self.params = _device_params(xp, sampler.energy, dtype)
        self.sampler, self.st, self.schedule, self.out = sampler, st, schedule, out
        n, d = st.x.shape
        self.X = xp.asarray(st.x)
        eg, st.eg = st.eg, None
        self.have_grad = eg is not None
        self.E, self.G = eg if eg is not None else (xp.empty(n, dtype), xp.empty_like(self.X))
        self.pos = xp.asarray(st.pos)
        self.k0, self.k1 = np.uint64(st.key[0]), np.uint64(st.key[1])
        self.base = (xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty(n, dtype),
                     xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty(n, dtype),
                     xp.empty(n, np.uint64), xp.empty((n, 4), np.uint32))
        self.scratch = module._cuda_scratch(xp, n, d, dtype)
        self.no_moments = xp.zeros((0, 0, 3, d))
        self.want_moments = out["mean"].shape[0] > 0
        self.done = 0

    def _launch(self, n_steps, keep, extra, outs):
        with self.backend.context(), _compile_errors(self.sampler.energy):
            self.kernel[_launch(self.X.shape[0])](
                self.params, self.X, self.G, self.E, self.have_grad, self.pos, self.k0,
                self.k1, np.int64(self.st.chain_offset), np.int64(0), np.int64(n_steps),
                keep, extra, outs, self.base, self.scratch)
        self.have_grad = True

    def __call__(self, s0, s1, burn_in, thin):
        from .base import _kept_piece, _record_step_sizes

        o, xp = self.out, self.xp
        tail = (o["divergences"], o["n_accepted"], o["alpha"])
        n, d = self.X.shape
        # Without a trajectory, the kept states behind the moments go to a bounded
        # scratch buffer: a launch keeps at most per_launch of them.
        own = o["traj"].shape[0] > 0
        per_launch = max(1, self.MOMENT_BUFFER // (n * d)) if self.want_moments else None
        buf = None
        a = s0
        while a < s1:
            b, keep = _kept_piece(a, s1, burn_in, thin, per_launch)
            sched = self.schedule(a, b)
            extra = tuple(xp.asarray(v) if isinstance(v, np.ndarray) else v for v in
                          self.sampler._kernel_args(sched, self.X.dtype, d))
            kept = keep[keep >= 0]
            ka, kb = (int(kept[0]), int(kept[-1]) + 1) if len(kept) else (0, 0)
            if not self.want_moments:
                self._launch(b - a, xp.asarray(keep), extra,
                             (o["traj"], o["energy"], o["grad_norm"], o["accepted"],
                              self.no_moments) + tail)
            else:
                if not own and buf is None:
                    buf = xp.empty((n, min(per_launch, o["mean"].shape[0]), d),
                                   self.X.dtype)
                traj = o["traj"][:, ka:kb] if own else buf[:, :kb - ka]
                self._launch(b - a, xp.asarray(np.where(keep >= 0, keep - ka, -1)), extra,
                             (traj, o["energy"][:, ka:kb], o["grad_norm"][:, ka:kb],
                              o["accepted"][:, ka:kb], self.no_moments) + tail)
                if kb > ka:
                    kept_moments(traj, o["mean"][ka:kb], o["var"][ka:kb])
            _record_step_sizes(o, keep, sched)
            a = self.done = b
        self.sync()

    def sync(self):
        """Wait for the launches: the driver sizes chunks by their time, and a chunk's
        end is where progress is reported and Ctrl-C lands."""
        self.backend.synchronize()

    def store(self, st):
        st.x = self.X
        st.pos = self.pos
