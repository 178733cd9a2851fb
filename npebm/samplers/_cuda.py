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

_KERNELS = {}


def simulated():
    """Whether numba.cuda is Numba's CPU simulator rather than a GPU."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def _build(module, point):
    from numba.extending import register_jitable

    from ..energies._kernels import make_block

    # The energy's per-point kernel over a block's rows, as the CPU's block functions.
    run_block = module._build_run_block(register_jitable(make_block(point)), True)
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
        kernel = _KERNELS[key] = _build(module, energy.point_function)
    return kernel, module


def block_moments(traj, rows):
    """Per-block shifted sums ``(n_blocks, n_kept, 3, dim)`` of kept states ``traj``
    ``(n, n_kept, dim)``, blocks of ``rows`` chains, as the CPU kernels record them."""
    from ..backend import array_namespace

    xp = array_namespace(traj)
    n, n_kept, d = traj.shape
    n_blocks = -(-n // rows)
    out = xp.zeros((n_blocks, n_kept, 3, d))
    for b in range(n_blocks):
        x = traj[b * rows:(b + 1) * rows].astype(np.float64)
        shift = x[0]
        dx = x - shift
        out[b, :, 0] = shift
        out[b, :, 1] = dx.sum(axis=0)
        out[b, :, 2] = (dx * dx).sum(axis=0)
    return out


class CudaRunner:
    """Runs chunks of steps through the sampler's CUDA kernel (the CPU ``_FusedRunner``'s
    interface): state and outputs stay in ``xp`` arrays on the device."""

    threads_per_block = 128

    def __init__(self, sampler, st, sched, out, xp):
        from ..energies import _compile

        self.xp = xp
        dtype = st.x.dtype
        self.kernel, module = kernel_for(sampler, sampler.energy)
        self.params = tuple(xp.asarray(p) if isinstance(p, np.ndarray) else p
                            for p in _compile.cast_params(sampler.energy.params, dtype))
        self.sampler, self.st, self.sched, self.out = sampler, st, sched, out
        n, d = st.x.shape
        self.X = xp.asarray(st.x)
        self.G = xp.empty_like(self.X)
        self.E = xp.empty(n, dtype)
        self.pos = xp.asarray(st.pos)
        self.k0, self.k1 = np.uint64(st.key[0]), np.uint64(st.key[1])
        self.base = (xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty(n, dtype),
                     xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty(n, dtype),
                     xp.empty(n, np.uint64), xp.empty((n, 4), np.uint32))
        self.scratch = module._cuda_scratch(xp, n, d, dtype)
        # Threads never share an accumulator: across-chain moments come from the kept
        # states afterwards (block_moments).
        self.no_moments = xp.zeros((0, 0, 3, d))
        self.extra = self._extra()
        self.keep = None
        self.have_grad = False
        self.done = 0

    def _extra(self):
        xp = self.xp
        args = self.sampler._kernel_args(self.sched, self.st.x.dtype, self.st.x.shape[1])
        return tuple(xp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)

    def __call__(self, s0, s1, burn_in, thin):
        from .base import kept_indices

        o = self.out
        if self.keep is None:
            self.keep = self.xp.asarray(kept_indices(len(self.sched["step_size"]), burn_in,
                                                     thin))
        outs = (o["traj"], o["energy"], o["grad_norm"], o["accepted"], self.no_moments,
                o["divergences"], o["n_accepted"], o["alpha"])
        n = self.X.shape[0]
        tpb = self.threads_per_block
        self.kernel[-(-n // tpb), tpb](
            self.params, self.X, self.G, self.E, self.have_grad, self.pos, self.k0, self.k1,
            np.int64(self.st.chain_offset), np.int64(s0), np.int64(s1), self.keep,
            self.extra, outs, self.base, self.scratch)
        self.have_grad = True
        self.done = s1

    def set_step_size(self, s, arrays):
        for name, value in arrays.items():
            self.sched[name][s] = value[0]
        self.extra = self._extra()

    def store(self, st):
        st.x = self.X
        st.pos = self.pos
