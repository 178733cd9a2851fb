"""The chain loops: one compiled CPU loop, the CUDA loop's shared body, and one
vectorised loop.  Every sampler runs through them.

A sampler supplies (see ``ChainSampler``):

- ``state_fields``: per-chain state beyond x, E(x), ∇E(x) and the stream position;
- ``info_fields``: per-step information beyond accepted, diverged and the acceptance
  probability, recorded with the diagnostics;
- ``_build_step(evaluate)``: one compiled step of rows ``r0 .. r1 - 1`` (one chain, or a
  block of chains for energies that evaluate many at once);
- ``_vector_step``: the same step as array operations over all chains.

The loops own everything else: streams, the first gradient, counting accepted and
diverged steps, recording (trajectory, thinning, diagnostics, across-chain moments by
block), chunks, progress and Ctrl-C (in ``ChainSampler._run``) and resume.

The compiled step's signature::

    step(r0, r1, s, block, params, chains, extra, args, scratch, info)

- ``s``: the step's index into the per-step arrays of ``args``;
- ``block``, ``params``: the energy's block function (None when built in) and parameters;
  ``evaluate(block, params, X, G, E, r0, r1)`` fills ``E`` and ``G`` at rows
  ``r0 .. r1 - 1`` of ``X`` (a tempered run's evaluate gives each row its temperature);
- ``chains`` = ``(X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps)``: states,
  gradients and energies (advanced in place), the proposal rows, stream positions and
  caches, the key, the global index of row 0, and each chain's step-size factor c
  (``steps[r] = (c, sqrt(c))`` in the run's dtype; 1 but in tempered runs): row r steps
  with η c where the schedule says η;
- ``extra``: the declared state fields' arrays, in declaration order, ``(n, ...)``;
- ``args``: the sampler's ``_step_args`` tuple; ``scratch``: its ``_scratch`` tuple;
- ``info`` = ``(accepted, diverged, alpha, fields)``: the step writes, for each of its
  rows, whether it moved, whether it diverged (counted and reported), the acceptance
  probability and the declared info fields (``fields[r, i]``, float64).

Arrays are indexed by chain (row ``r`` is chain ``chain0 + r``) on both devices: the CPU
loop walks blocks of rows per thread, the CUDA loop one row per thread.  Every array of
``chains``, ``extra``, ``scratch`` and ``info`` has one row per chain (first axis n) and
the step touches only its rows: a CPU kernel compiled for one dimension steps its
chains on copies of their rows in its stack frame, one chain (``r0, r1 = 0, 1``) or up
to BLOCK_ROWS in lockstep at a time (see ``build_run_rows``).
"""
import time

import numpy as np

from ..backend import array_namespace, to_numpy
from ..diagnostics import combine_block_moments
from ..random import NOISE

#: Most chains per block of the CPU loop (a block shares its moment sums).
BLOCK_ROWS = 64
#: Dimensions whose float32 chains get a CPU kernel of their own when the energy is a
#: built-in (inlined into the kernel, not tempered), compiled knowing the dimension:
#: every loop over coordinates then unrolls and a chain's row stays in registers (2-D,
#: the toy models': W1 1.3x, W3 1.2x, UL 1.5x).  Each is one more kernel to compile
#: (CI: about 3 minutes of compiling for float64 and tempered ones too), so only these.
SMALL_DIMS = (2,)
#: Widest per-chain row of a step's declared state, scratch or info that the CPU stack
#: loop copies into its frame (wider rows stay in place).
STAGED_WIDTH = 16
#: Fewest chains per thread: steps write their chains' rows in place, and threads whose
#: rows share cache lines slow each other down (8 chains on 2 threads ran 1.9x slower
#: than on one).
THREAD_ROWS = 64
#: Fewer chains than 2 THREAD_ROWS still go to several threads, each on copies of its
#: chains' rows (no shared cache lines) copied back after, when a call's steps take at
#: least this many seconds on one thread: waking the pool takes 0.1-0.2 ms.
APART_SECONDS = 1e-3
#: A call's first 1/PROBE_PARTS of steps (at least one) is timed on one thread, to
#: decide; calls of fewer steps stay on one thread.
PROBE_PARTS = 32


def rows_per_block(n):
    """Chains per block of the CPU loop: a function of n alone, never of the thread
    count, so that per-block partial sums (and so the diagnostics) are reproducible."""
    return min(BLOCK_ROWS, max(1, -(-n // BLOCK_ROWS)))


# --------------------------------------------------------------- compiled, shared

def build_run_rows(step, evaluate, dim=0, layout=None, chain_major=True):
    """The loop over steps of chains ``c0 .. c1 - 1`` (block ``b``), compiled into both
    the CPU kernel and the CUDA kernel (``c1 = c0 + 1``, one chain per thread).

    With ``dim`` (a CPU kernel compiled for chains of that dimension), the chains step
    on copies of their rows in the kernel's stack frame (see
    :func:`~npebm.samplers._jit.row_stager`), one at a time (``chain_major``) or up to
    :data:`BLOCK_ROWS` in lockstep: the step, given rows ``0 .. z - a - 1`` of the
    copies (and views of the rows of arrays whose rows' shape ``layout`` does not give,
    see :func:`row_layout`), computes the same numbers.
    """
    from numba.extending import register_jitable

    from ._jit import record, row_stager, start_streams

    # No reference counting in the step loop: it then costs what its arithmetic costs.
    @register_jitable(_nrt=False, forceinline=True)
    def run_steps(b, first, r0, r1, s0, s1, keep, block, params, chains, extra, args,
                  scratch, info, counts, outs):
        """Steps ``s0 .. s1 - 1`` of rows ``r0 .. r1 - 1``, counted and recorded; row
        ``first`` is the block's first chain (-1: none of these)."""
        X, G, E = chains[:3]
        accepted, diverged, alpha, fields = info
        div, n_acc = counts
        traj, e_out, gn_out, acc_out, moments, info_out = outs
        n_info = fields.shape[1]
        for s in range(s0, s1):
            step(r0, r1, s, block, params, chains, extra, args, scratch, info)
            k = keep[s]
            for r in range(r0, r1):
                if accepted[r]:
                    n_acc[r] += 1
                if diverged[r]:
                    div[r] += 1
                if k >= 0:
                    record(k, b, r, r == first, X, E, G, accepted[r], traj, e_out, gn_out,
                           acc_out, moments)
                    if info_out.shape[0] != 0:
                        for i in range(n_info):
                            info_out[r, k, i] = fields[r, i]

    @register_jitable(_nrt=False, forceinline=True)
    def run_rows(b, c0, c1, chain_major, s0, s1, keep, have_grad, block, params, chains,
                 extra, args, scratch, info, counts, outs):
        X, G, E = chains[:3]
        pos, bufs, k0, k1, chain0 = chains[6:11]
        start_streams(k0, k1, chain0, pos, bufs, c0, c1)
        if not have_grad:
            evaluate(block, params, X, G, E, c0, c1)
        # Chain-major order (all steps of one chain, then the next) keeps a small chain
        # hot in registers and cache; blocks of rows serve energies that evaluate many
        # chains at once (a dense product) or sit behind a pointer.
        for grp in range(c1 - c0 if chain_major else 1):
            r0 = c0 + grp if chain_major else c0
            r1 = r0 + 1 if chain_major else c1
            run_steps(b, c0, r0, r1, s0, s1, keep, block, params, chains, extra, args,
                      scratch, info, counts, outs)

    if not dim:
        return run_rows

    # The CUDA target has no stack arrays: only CPU kernels for one dimension get this
    # loop (and only it: compiling both doubled their compile time).  Chain-major ones
    # step a chain at a time; lockstep ones (HMC) up to BLOCK_ROWS chains.
    rows = 1 if chain_major else BLOCK_ROWS
    per_chain = ((dim,), (dim,), (), (dim,), (dim,), (), (), (4,), (2,))
    stack_chains, stage_chains, unstage_chains = row_stager(per_chain, rows)
    stack_extra, stage_extra, unstage_extra = row_stager(layout[0], rows)
    stack_scratch, stage_scratch, unstage_scratch = row_stager(layout[1], rows)
    stack_info, stage_info, unstage_info = row_stager(layout[2], rows)
    stack_counts, stage_counts, unstage_counts = row_stager(layout[3], rows)

    @register_jitable(_nrt=False, forceinline=True)
    def run_rows_on_stack(b, c0, c1, chain_major, s0, s1, keep, have_grad, block, params,
                          chains, extra, args, scratch, info, counts, outs):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        start_streams(k0, k1, chain0, pos, bufs, c0, c1)
        if not have_grad:
            evaluate(block, params, X, G, E, c0, c1)
        traj, e_out, gn_out, acc_out, moments, info_out = outs
        own = (X, G, E, XN, GN, EN, pos, bufs, steps)
        st_chains, st_extra = stack_chains(own), stack_extra(extra)
        st_scratch, st_info, st_counts = (stack_scratch(scratch), stack_info(info),
                                          stack_counts(counts))
        # The rows of a piece are independent: pieces one after the other give the
        # numbers of the whole block in lockstep (the moments sum its rows in order).
        for a in range(c0, c1, rows):
            z = min(a + rows, c1)
            x, g, e, xn, gn, en, pos_, bufs_, steps_ = stage_chains(own, st_chains, a, z)
            outs_a = (traj[a:z], e_out[a:z], gn_out[a:z], acc_out[a:z], moments,
                      info_out[a:z])
            # (one row: a literal, so that the step's loops over rows fold away)
            run_steps(b, 0 if a == c0 else -1, 0, 1 if rows == 1 else z - a, s0, s1, keep,
                      block, params,
                      (x, g, e, xn, gn, en, pos_, bufs_, k0, k1, chain0 + a, steps_),
                      stage_extra(extra, st_extra, a, z), args,
                      stage_scratch(scratch, st_scratch, a, z),
                      stage_info(info, st_info, a, z), stage_counts(counts, st_counts, a, z),
                      outs_a)
            unstage_chains(own, st_chains, a, z)
            unstage_extra(extra, st_extra, a, z)
            unstage_scratch(scratch, st_scratch, a, z)
            unstage_info(info, st_info, a, z)
            unstage_counts(counts, st_counts, a, z)

    return run_rows_on_stack


def build_cpu_kernel(build_step, fixed, chain_major, tempered=False, dim=0, layout=None):
    """The CPU kernel of a sampler's step over blocks ``b0 .. b1 - 1`` of chains (one
    call per thread, all steps of a chunk inside), for chains of dimension ``dim`` (0:
    any; the numbers are the same either way).  A ``tempered`` kernel's parameters
    are ``(energy's, betas, (mean, prec_diag, prec, dense), last_e, last_g)``: it
    evaluates each row's ``β E + (1 − β) E_q`` (see ``npebm.energies.tempered``) and
    leaves E and ∇E of the last point evaluated in ``last_e``, ``last_g``."""
    from numba import njit
    from numba.extending import register_jitable

    from ._jit import SOURCE_STAMP, call_block

    if tempered:
        @register_jitable(_nrt=False, forceinline=True)
        def evaluate(block, params, X, G, E, r0, r1):
            base, betas, (mean, prec_diag, prec, dense), last_e, last_g = params
            call_block(fixed, block, X[r0:r1], G[r0:r1], E[r0:r1], base)
            d = X.shape[1]
            for r in range(r0, r1):
                # The target's own values: the swaps need them at the chains' states.
                last_e[r] = E[r]
                for j in range(d):
                    last_g[r, j] = G[r, j]
                b = betas[r]
                if b == 1.0:
                    continue
                e_ref = 0.0
                for j in range(d):
                    if dense:
                        g_ref = 0.0
                        for k in range(d):
                            g_ref += prec[j, k] * (np.float64(X[r, k]) - mean[k])
                    else:
                        g_ref = prec_diag[j] * (np.float64(X[r, j]) - mean[j])
                    e_ref += 0.5 * (np.float64(X[r, j]) - mean[j]) * g_ref
                    if b == 0.0:  # the reference alone: the target need not be finite
                        G[r, j] = g_ref
                    else:
                        G[r, j] = b * np.float64(G[r, j]) + (1.0 - b) * g_ref
                E[r] = e_ref if b == 0.0 else b * np.float64(E[r]) + (1.0 - b) * e_ref
    else:
        @register_jitable(_nrt=False, forceinline=True)
        def evaluate(block, params, X, G, E, r0, r1):
            call_block(fixed, block, X[r0:r1], G[r0:r1], E[r0:r1], params)

    run_rows = build_run_rows(build_step(evaluate), evaluate, dim, layout, chain_major)
    stamp = SOURCE_STAMP

    @njit(nogil=True, cache=True)
    def kernel(b0, b1, rows, s0, s1, keep, have_grad, block, params, chains, extra, args,
               scratch, info, counts, outs, progress):
        if stamp < 0:  # never: the stamp is here to key the disk cache on npebm's sources
            return
        X, G, E, XN, GN = chains[:5]
        if dim and (X.shape[1] != dim or G.shape[1] != dim or XN.shape[1] != dim
                    or GN.shape[1] != dim):
            # Never (kernel_for picks the kernel by dimension); what follows the test
            # is compiled knowing the rows' length.
            raise ValueError("a CPU kernel ran on chains of another dimension")
        n = X.shape[0]
        for b in range(b0, b1):
            c0 = b * rows
            run_rows(b, c0, min(n, c0 + rows), chain_major, s0, s1, keep, have_grad, block,
                     params, chains, extra, args, scratch, info, counts, outs)
        progress[0] = s1

    return kernel


_FIXED_BLOCKS = {}
_KERNELS = {}


def kernel_for(sampler, energy, dtype, dim):
    """``(kernel, block, params)``: the CPU kernel of ``sampler``'s type for a compiled
    energy at ``dtype``, for chains of dimension ``dim``.

    Built-ins get a kernel specialised to their block function (inlined, cached on disk
    per built-in); other compiled energies share the generic kernel, which calls their
    block function through a pointer.
    """
    from ..energies import _compile, _kernels
    build_step = type(sampler)._build_step
    tempered = getattr(energy, "is_tempered", False)
    path, energy = (energy, energy.base) if tempered else (None, energy)
    if energy._cacheable:
        custom = energy._block_function()
        name = energy._kernel + ("/block" if custom is not None else "")
        chain_major = custom is None and not type(sampler)._rows_in_lockstep
        fixed = _FIXED_BLOCKS.get(name)
        if fixed is None:
            from numba.extending import register_jitable

            # A jitable plain function, not a dispatcher: Numba keys the kernel's disk
            # cache on its pickled closure cells, and a dispatcher pickles differently
            # in every process.  No reference counting: it runs once per step.
            py_block = custom or _kernels.make_block(energy.point_function)
            fixed = _FIXED_BLOCKS[name] = register_jitable(_nrt=False, forceinline=True)(
                py_block)
        block, params = None, _compile.cast_params(energy.params, dtype)
    else:
        name, fixed, chain_major = None, None, False
        block, params = _compile.block_function(energy, dtype)
    if tempered:
        params = (params, path.betas, path.reference.kernel_params(),
                  *path.last_buffers(np.dtype(dtype)))
    small = (fixed is not None and not tempered and np.dtype(dtype) == np.float32
             and dim in SMALL_DIMS)
    dim = dim if small else 0
    layout = row_layout(sampler, dim, dtype) if dim else None
    key = (build_step, name, tempered, layout, dim)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = build_cpu_kernel(build_step, fixed, chain_major, tempered,
                                                  dim, layout)
    return kernel, block, params


def row_layout(sampler, dim, dtype):
    """The per-chain row shapes of the step's ``extra``, ``scratch``, ``info`` and
    ``counts`` tuples for chains of dimension ``dim`` (see ``_jit.row_stager``): the
    rows the stack loop copies into its frame.  Staging them too, not only X, G and E,
    measured W1 1.05x, W3 1.06x, UL 1.11x (one thread): a row in memory that the
    step stores to every step (momentum, accepted, counts) is reloaded and stored
    again; on the stack it stays in registers."""
    def row(shape):
        # Other shapes stay in place, and leave the kernel's key alone (NUTS's
        # checkpoints, (max_depth, dim), would otherwise compile a kernel per depth);
        # so do wide rows, which would take BLOCK_ROWS times their size of a thread's
        # stack (512 KiB on macOS's threads).
        if shape == () or (len(shape) == 1 and 0 < shape[0] <= STAGED_WIDTH):
            return shape
        return None

    extra = tuple(row(f.per_chain_shape(dim)) for f in sampler.state_fields)
    scratch = tuple(row(a.shape[1:]) for a in sampler._scratch(np, 1, dim, dtype))
    info = ((), (), (), row((len(sampler.info_fields),)))
    return extra, scratch, info, ((), ())


# ------------------------------------------------------------------- recording

def kept_indices(s0, s1, burn_in, thin):
    """Per step ``s0 .. s1 - 1``: its index among the kept steps, or -1 (a lookup beats a
    division in the kernels)."""
    t = np.arange(s0, s1, dtype=np.int64) - burn_in + 1
    return np.where((t > 0) & (t % thin == 0), t // thin - 1, -1).astype(np.int64)


def kept_piece(s0, s1, burn_in, thin, slots, recording=True):
    """``(s1', keep)``: the steps ``s0 .. s1' - 1`` (``s1' <= s1``) that keep at most
    ``slots`` states, and their :func:`kept_indices` (all -1 when nothing is recorded)."""
    if not recording:
        return s1, np.full(s1 - s0, -1, np.int64)
    keep = kept_indices(s0, s1, burn_in, thin)
    kept = np.flatnonzero(keep >= 0)
    if slots is not None and len(kept) > slots:
        cut = int(kept[slots])
        return s0 + cut, keep[:cut]
    return s1, keep


def moment_slots(out):
    """Kept steps a piece of a run may hold: the moment buffer's slots, when there is one."""
    moments = out.get("moments")
    return moments.shape[1] if moments is not None and moments.size else None


def combine_kept(out, keep, n, device):
    """Mean and var across chains of the kept steps in ``keep``, from their per-block
    sums (slot ``k % slots`` of ``out["moments"]``), in block order."""
    ks = keep[keep >= 0]
    moments = out["moments"]
    if len(ks) == 0 or moments.shape[0] == 0:
        return
    counts = np.diff(np.append(np.arange(0, n, out["rows"]), n))
    slots = ks % moments.shape[1]
    mean, var = combine_block_moments(to_numpy(moments[:, slots]), counts)
    out["mean"][ks] = device(mean)
    out["var"][ks] = device(var)


def record_step_sizes(out, keep, sched):
    """The step size of each kept step, from the piece's schedule arrays."""
    if out["step_size"].shape[0]:
        at = keep >= 0
        out["step_size"][keep[at]] = sched["step_size"][at]


# --------------------------------------------------------------------- runners

class CpuRunner:
    """Runs chunks of steps through the compiled CPU loop, blocks of chains spread over
    threads.

    Each call runs steps ``s0 .. s1 - 1`` in pieces that keep at most as many states as
    the moment buffer has slots; a piece's schedules are computed for it alone, and
    passed to the kernel as steps ``0 .. s1' - s0 - 1``.
    """

    def __init__(self, sampler, st, schedule, out, rows):
        dtype = st.x.dtype
        n, d = st.x.shape
        self.kernel, self.block, self.params = kernel_for(sampler, sampler.energy, dtype, d)
        self.sampler, self.st, self.schedule = sampler, st, schedule
        self.out, self.rows = out, rows
        self.have_grad, self.chains, self.extra, self.scratch, self.info, self.counts = \
            loop_arrays(np, sampler, st, out)
        self.progress = np.zeros(1, np.int64)
        self.tempered = getattr(sampler.energy, "is_tempered", False)
        #: Seconds a step of all chains took on one thread (None until timed).
        self.step_seconds = None
        self.done = 0

    def __call__(self, s0, s1, burn_in, thin):
        from .._threads import _n_threads, run_blocks

        o = self.out
        n, d = self.st.x.shape
        slots = moment_slots(o)
        recording = o["traj"].shape[0] > 0 or o["energy"].shape[0] > 0
        n_blocks = -(-n // self.rows)
        # Few chains (fewer than two threads' worth) go apart when a call's steps take
        # long enough; how long, its first steps tell, timed on one thread.  Not calls of
        # a step or a few (adaptation's): going apart costs them more than it saves.
        threads = 1
        if n < 2 * THREAD_ROWS and s1 - s0 >= PROBE_PARTS and not self.tempered:
            threads = min(_n_threads(), n_blocks)
        may_go_apart = threads > 1
        a = s0
        while a < s1:
            b, keep = kept_piece(a, s1, burn_in, thin, slots, recording)
            timed = may_go_apart and self.step_seconds is None
            if timed:
                b = a + max(1, (b - a) // PROBE_PARTS)
                keep = keep[:b - a]
            sched = self.schedule(a, b)
            args = self.sampler._step_args(sched, self.st.x.dtype, d)
            if slots:
                o["moments"][:, keep[keep >= 0] % slots] = 0.0
            outs = (o["traj"], o["energy"], o["grad_norm"], o["accepted"], o["moments"],
                    o["info"])
            self.progress[0] = -1
            try:
                if (may_go_apart and not timed
                        and self.step_seconds * (b - a) >= APART_SECONDS):
                    self._run_apart(threads, n_blocks, b - a, keep, args, outs)
                else:
                    started = time.perf_counter()
                    run_blocks(self.kernel, n_blocks, np.int64(self.rows), np.int64(0),
                               np.int64(b - a), keep, self.have_grad, self.block,
                               self.params, self.chains, self.extra, args, self.scratch,
                               self.info, self.counts, outs, self.progress,
                               max_threads=max(1, n // THREAD_ROWS))
                    if timed:
                        self.step_seconds = (time.perf_counter() - started) / (b - a)
            finally:
                # Ctrl-C surfaces once the kernel has returned (the waits let every
                # range finish): its steps were taken, and the state must count them.
                if self.progress[0] == b - a:
                    self.have_grad = True
                    combine_kept(o, keep, n, self.sampler._on_device)
                    record_step_sizes(o, keep, sched)
                    self.done = b
            a = b

    def _run_apart(self, threads, n_blocks, n_steps, keep, args, outs):
        """Run ``n_steps`` steps with each of ``threads`` threads on copies of its blocks'
        rows of the per-chain arrays (as shards of a run are: the same numbers), copied
        back once all have finished, Ctrl-C or not."""
        from .._threads import run_apart

        rows, n = self.rows, self.st.x.shape[0]
        d, dtype = self.st.x.shape[1], self.st.x.dtype
        k0, k1, chain0 = self.chains[8:11]
        calls, copies = [], []

        def own(arrays, c0, c1):
            """The thread's copies of rows ``c0 .. c1 - 1``, noted for copying back."""
            parts = tuple(line_copy(a[c0:c1]) for a in arrays)
            copies.append((c0, c1, arrays, parts))
            return parts

        for t in range(threads):
            b0, b1 = n_blocks * t // threads, n_blocks * (t + 1) // threads
            c0, c1 = b0 * rows, min(n, b1 * rows)
            chains = (*own(self.chains[:8], c0, c1), k0, k1, np.int64(chain0 + c0),
                      *own(self.chains[11:], c0, c1))
            traj, e_out, gn_out, acc_out, moments, info_out = outs
            piece_outs = (traj[c0:c1], e_out[c0:c1], gn_out[c0:c1], acc_out[c0:c1],
                          moments[b0:b1], info_out[c0:c1])
            scratch = tuple(line_copy(a) for a in self.sampler._scratch(np, c1 - c0, d, dtype))
            calls.append((np.int64(0), np.int64(b1 - b0), np.int64(rows), np.int64(0),
                          np.int64(n_steps), keep, self.have_grad, self.block, self.params,
                          chains, own(self.extra, c0, c1), args, scratch,
                          own(self.info, c0, c1), own(self.counts, c0, c1), piece_outs,
                          np.zeros(1, np.int64)))
        try:
            run_apart(self.kernel, calls)
        finally:
            for c0, c1, wholes, parts in copies:
                for whole, part in zip(wholes, parts):
                    whole[c0:c1] = part
            if all(call[-1][0] == n_steps for call in calls):
                self.progress[0] = n_steps

    def evaluate_start(self):
        """``(E, G)`` at the chains' states, by the kernel with no step."""
        if not self.have_grad:
            from .._threads import run_blocks

            o = self.out
            n, d = self.st.x.shape
            args = self.sampler._step_args(self.schedule(0, 1), self.st.x.dtype, d)
            outs = (o["traj"], o["energy"], o["grad_norm"], o["accepted"], o["moments"],
                    o["info"])
            run_blocks(self.kernel, -(-n // self.rows), np.int64(self.rows), np.int64(0),
                       np.int64(0), np.zeros(0, np.int64), False, self.block, self.params,
                       self.chains, self.extra, args, self.scratch, self.info, self.counts,
                       outs, self.progress, max_threads=max(1, n // THREAD_ROWS))
            self.have_grad = True
        return self.chains[2], self.chains[1]

    def arrays(self):
        """``(x, e, g)``: the chains' states, energies and gradients now (written in
        place by the kernel; a hook may change rows of ``x``, then
        :meth:`set_evaluated`)."""
        return self.chains[0], self.chains[2], self.chains[1]

    def set_evaluated(self, e, g):
        """Energies and gradients at the (changed) states, for the next step."""
        self.chains[2][:] = e
        self.chains[1][:] = g
        self.have_grad = True

    def set_step_scale(self, scale):
        """Each chain's step-size factor from the next step on (``st.step_scale``)."""
        self.st.step_scale = scale
        n, _ = self.st.x.shape
        self.chains[11][:] = step_factors(np, scale, n, self.st.x.dtype)

    def moved(self):
        """Which chains moved in the last step (bool per chain)."""
        return self.info[0].astype(bool)

    def last_info(self):
        """The last step's declared info fields, ``(n, n_info)`` float64."""
        return self.info[3]

    def store(self, st):
        """The chains' state is advanced in place: nothing to copy back."""


def line_copy(a):
    """A copy of ``a`` whose memory shares no 64-byte cache line with another array:
    small arrays allocated one after the other lie side by side, and two threads writing
    them slow each other down as if they shared the rows."""
    line = 64
    buf = np.empty(a.nbytes + 2 * line, np.uint8)
    at = -buf.__array_interface__["data"][0] % line
    out = buf[at:at + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def loop_arrays(xp, sampler, st, out):
    """``(have_grad, chains, extra, scratch, info, counts)``: the arrays of the step's
    contract (see the module docstring) for the chains of ``st``, in ``xp``.  The
    chains' state is advanced in place."""
    n, d = st.x.shape
    dtype = st.x.dtype
    eg, st.eg = st.eg, None
    E, G = eg if eg is not None else (xp.empty(n, dtype), xp.empty((n, d), dtype))
    chains = (st.x, G, E, xp.empty((n, d), dtype), xp.empty((n, d), dtype),
              xp.empty(n, dtype), st.pos, xp.empty((n, 4), np.uint32),
              np.uint64(st.key[0]), np.uint64(st.key[1]), np.int64(st.chain_offset),
              step_factors(xp, st.step_scale, n, dtype))
    extra = tuple(st.extra[f.name] for f in sampler.state_fields)
    info = (xp.zeros(n, np.uint8), xp.zeros(n, np.uint8), out["alpha"],
            xp.zeros((n, len(sampler.info_fields)), np.float64))
    return (eg is not None, chains, extra, sampler._scratch(xp, n, d, dtype), info,
            (out["divergences"], out["n_accepted"]))


def step_factors(xp, scale, n, dtype):
    """``(n, 2)``: each chain's step-size factor c and sqrt(c) in ``dtype`` (ones when
    ``scale`` is None)."""
    if scale is None:
        return xp.ones((n, 2), dtype)
    c = np.asarray(to_numpy(scale), np.float64)
    return xp.asarray(np.stack([c, np.sqrt(c)], axis=1).astype(dtype))


class VectorRunner:
    """Runs steps as array operations over all chains (energies that are not compiled).

    ``_vector_step(run, s, sched, streams)`` advances ``run.x``, ``run.e``, ``run.g`` and
    the arrays of ``run.extra`` (in place, or by handing back new arrays) and returns
    ``(accepted, diverged, alpha, fields)``, ``fields`` an (n, n_info) array or None when
    the sampler has no info fields.  ``run.defer`` is true at the last step of a run when
    nothing is recorded there and the sampler allows it (``_defers_last_evaluation``):
    the step may then leave ``run.e`` and ``run.g`` None, and the next run evaluates them.
    """

    #: The run's last step (set by the driver); see ``defer``.
    last = -1
    defer = False
    #: The last step's info fields (see ``last_info``).
    last_fields = None

    def __init__(self, sampler, st, schedule, out):
        self.sampler = sampler
        self.st = st
        self.schedule = schedule
        self.out = out
        self.x = st.x
        self.extra = st.extra
        self.e, self.g = st.eg if st.eg is not None else (None, None)
        st.eg = None
        #: (n, 2) step-size factors c, sqrt(c) of chains with their own step size, or None.
        self.factors = None if st.step_scale is None else step_factors(
            array_namespace(st.x), st.step_scale, st.x.shape[0], st.x.dtype)
        self.done = 0

    def __call__(self, s0, s1, burn_in, thin):
        from .. import _philox

        st, out = self.st, self.out
        if self.e is None:
            self.e, self.g = self.sampler._evaluate(self.x)
        if self.sampler.backend.name == "cuda":
            from . import _cuda as fills
        else:
            fills = _philox
        streams = Streams(fills, st.key, st.chain_offset, st.pos)
        slots = moment_slots(out)
        recording = out["traj"].shape[0] > 0 or out["energy"].shape[0] > 0
        a = s0
        while a < s1:
            b, keep = kept_piece(a, s1, burn_in, thin, slots)
            sched = self.schedule(a, b)
            if slots:
                out["moments"][:, keep[keep >= 0] % slots] = 0.0
            for s in range(a, b):
                self.defer = (s == self.last and self.sampler._defers_last_evaluation
                              and not (keep[s - a] >= 0 and recording))
                accepted, diverged, alpha, fields = self.sampler._vector_step(
                    self, s - a, sched, streams)
                st.x = self.x  # a step may hand back new arrays rather than write
                self.last_moved, self.last_fields = accepted, fields
                out["alpha"][:] = alpha
                out["divergences"] += diverged
                out["n_accepted"] += accepted
                if keep[s - a] >= 0:
                    self._record(int(keep[s - a]), accepted, fields)
                self.done = s + 1
            combine_kept(out, keep, self.x.shape[0], self.sampler._on_device)
            record_step_sizes(out, keep, sched)
            a = b

    def _record(self, k, accepted, fields):
        out = self.out
        if out["traj"].shape[0]:
            out["traj"][:, k] = self.x
        if out["energy"].shape[0]:
            out["energy"][:, k] = self.e
            g = self.g.astype(np.float64)
            out["grad_norm"][:, k] = (g * g).sum(axis=1) ** 0.5
            out["accepted"][:, k] = accepted
            if fields is not None:
                out["info"][:, k] = fields
            x = self.x.astype(np.float64)
            shift = x[0]
            dx = x - shift
            slot = k % out["moments"].shape[1]
            out["moments"][0, slot, 0] = shift
            out["moments"][0, slot, 1] = dx.sum(axis=0)
            out["moments"][0, slot, 2] = (dx * dx).sum(axis=0)

    def arrays(self):
        """``(x, e, g)`` now (``e`` and ``g`` None when the last step deferred them)."""
        return self.x, self.e, self.g

    def set_evaluated(self, e, g):
        """Energies and gradients at the (changed) states, for the next step."""
        self.e, self.g = e, g

    def set_step_scale(self, scale):
        """Each chain's step-size factor from the next step on (``st.step_scale``)."""
        self.st.step_scale = scale
        self.factors = step_factors(array_namespace(self.x), scale, self.x.shape[0],
                                    self.x.dtype)

    def moved(self):
        """Which chains moved in the last step (bool per chain)."""
        return np.asarray(self.last_moved, bool)

    def last_info(self):
        """The last step's declared info fields, ``(n, n_info)`` float64 (None for a
        sampler that declares none)."""
        return self.last_fields

    def store(self, st):
        st.x = self.x


class Streams:
    """The chains' noise streams for the vectorised path: draws per step, in the same
    per-chain order as the compiled kernels, so both paths see the same numbers.

    ``fills`` provides ``fill_normal`` / ``fill_uniform`` over arrays of its device:
    ``npebm._philox`` on the CPU, the CUDA kernels of ``npebm.samplers._cuda`` on a GPU.
    """

    def __init__(self, fills, key, chain_offset, pos):
        self._fills = fills
        self.k0, self.k1 = np.uint32(key[0]), np.uint32(key[1])
        self.chain_offset = chain_offset
        self.pos = pos  # advanced in place
        self.xp = array_namespace(pos)

    def normal(self, n, d, dtype):
        out = self.xp.empty((n, d), dtype)
        self._fills.fill_normal(self.k0, self.k1, NOISE, self.chain_offset, self.pos, out)
        return out

    def uniform(self, n, dtype):
        out = self.xp.empty((n, 1), dtype)
        self._fills.fill_uniform(self.k0, self.k1, NOISE, self.chain_offset, self.pos, out)
        return out[:, 0]
