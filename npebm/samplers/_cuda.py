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


def _build(build_step, point):
    from numba.extending import register_jitable

    from ._loop import build_run_rows

    # The energy's per-point kernel over a block's rows (see device_rows).
    rows = register_jitable(device_rows(point))

    def evaluate_rows(block, params, X, G, E, r0, r1):
        rows(X[r0:r1], G[r0:r1], E[r0:r1], params)

    evaluate_rows = register_jitable(evaluate_rows)
    run_rows = build_run_rows(build_step(evaluate_rows), evaluate_rows)

    @cuda.jit
    def kernel(s0, s1, keep, have_grad, params, chains, extra, args, scratch, info, counts,
               outs):
        i = cuda.grid(1)
        if i >= chains[0].shape[0]:
            return
        # One chain per thread, as a block of one row (block index 0: no across-chain
        # moments, which the driver reduces from the kept states, so no thread waits).
        run_rows(0, i, i + 1, True, s0, s1, keep, have_grad, None, params, chains, extra,
                 args, scratch, info, counts, outs)

    return kernel


def kernel_for(sampler, energy):
    """The CUDA kernel of ``sampler``'s step for ``energy``'s per-point function."""
    build_step = type(sampler)._build_step
    key = (build_step, energy.point_function)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _build(build_step, _device_point(energy))
    return kernel


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
    """Runs chunks of steps through the sampler's CUDA kernel (the CPU runner's
    interface): state and outputs stay in ``xp`` arrays on the device.

    Threads never share an accumulator, so the across-chain mean and variance of each
    kept step come from the kept states after each launch (``out["mean"]``,
    ``out["var"]``).  Without a trajectory those states go to a bounded scratch buffer,
    ``MOMENT_BUFFER`` values at most, and a chunk is split into launches that fit.
    """

    #: Values (n × kept steps × dim) of the scratch trajectory behind diagnostics.
    MOMENT_BUFFER = 1 << 25

    def __init__(self, sampler, st, schedule, out, backend):
        from ._loop import loop_arrays

        self.backend = backend
        xp = self.xp = backend.xp
        dtype = st.x.dtype
        self.kernel = kernel_for(sampler, sampler.energy)
        self.params = _device_params(xp, sampler.energy, dtype)
        self.sampler, self.st, self.schedule, self.out = sampler, st, schedule, out
        n, d = st.x.shape
        st.x = xp.asarray(st.x)
        st.pos = xp.asarray(st.pos)
        st.extra = {k: xp.asarray(v) for k, v in st.extra.items()}
        self.have_grad, self.chains, self.extra, self.scratch, self.info, self.counts = \
            loop_arrays(xp, sampler, st, out)
        self.no_moments = xp.zeros((0, 0, 3, d))
        self.want_moments = out["mean"].shape[0] > 0
        self.done = 0

    def _launch(self, n_steps, keep, args, outs):
        with self.backend.context(), _compile_errors(self.sampler.energy):
            self.kernel[_launch(self.st.x.shape[0])](
                np.int64(0), np.int64(n_steps), keep, self.have_grad, self.params,
                self.chains, self.extra, args, self.scratch, self.info, self.counts, outs)
        self.have_grad = True

    def __call__(self, s0, s1, burn_in, thin):
        from ._loop import kept_piece, record_step_sizes

        o, xp = self.out, self.xp
        n, d = self.st.x.shape
        # Without a trajectory, the kept states behind the moments go to a bounded
        # scratch buffer: a launch keeps at most per_launch of them.
        own = o["traj"].shape[0] > 0
        per_launch = max(1, self.MOMENT_BUFFER // (n * d)) if self.want_moments else None
        buf = None
        a = s0
        while a < s1:
            b, keep = kept_piece(a, s1, burn_in, thin, per_launch)
            sched = self.schedule(a, b)
            args = tuple(xp.asarray(v) if isinstance(v, np.ndarray) else v for v in
                         self.sampler._step_args(sched, self.st.x.dtype, d))
            kept = keep[keep >= 0]
            ka, kb = (int(kept[0]), int(kept[-1]) + 1) if len(kept) else (0, 0)
            if not self.want_moments:
                self._launch(b - a, xp.asarray(keep), args,
                             (o["traj"], o["energy"], o["grad_norm"], o["accepted"],
                              self.no_moments, o["info"]))
            else:
                if not own and buf is None:
                    buf = xp.empty((n, min(per_launch, o["mean"].shape[0]), d),
                                   self.st.x.dtype)
                traj = o["traj"][:, ka:kb] if own else buf[:, :kb - ka]
                self._launch(b - a, xp.asarray(np.where(keep >= 0, keep - ka, -1)), args,
                             (traj, o["energy"][:, ka:kb], o["grad_norm"][:, ka:kb],
                              o["accepted"][:, ka:kb], self.no_moments,
                              o["info"][:, ka:kb]))
                if kb > ka:
                    kept_moments(traj, o["mean"][ka:kb], o["var"][ka:kb])
            record_step_sizes(o, keep, sched)
            a = self.done = b
        self.sync()

    def sync(self):
        """Wait for the launches: the driver sizes chunks by their time, and a chunk's
        end is where progress is reported and Ctrl-C lands."""
        self.backend.synchronize()

    def store(self, st):
        """The chains' state is advanced in place: nothing to copy back."""
