"""What a sampler run records, as named arrays.

:class:`Diagnostics` is the record ``sampler.sample(..., return_diagnostics=True)``
returns.  It needs only the array namespace of its contents (NumPy or CuPy).
"""
import warnings
from collections.abc import Mapping

import numpy as np

from ._validation import check_choice
from .backend import array_namespace, to_numpy

__all__ = ["Diagnostics", "ess", "rhat", "mcse", "autocorrelation", "combine_block_moments"]

#: The arrays samplers record and their shapes.
FIELDS = {
    "energy": "(n_kept, n_samples)",
    "acceptance_rate": "(n_kept,)",
    "mean": "(n_kept, dim)",
    "var": "(n_kept, dim)",
    "grad_norm": "(n_kept, n_samples)",
    "step_size": "(n_kept,)",
    "divergences": "(n_samples,)",
}


def combine_block_moments(moments, counts):
    """Mean and variance (ddof 0) across chains from per-block shifted sums.

    ``moments`` (n_blocks, n_kept, 3, dim) holds each block's float64 (shift, Σ(x − shift),
    Σ(x − shift)²); ``counts`` (n_blocks,) its chains: a shard run's diagnostics carry
    them as ``block_sums`` and ``block_counts``, and shards concatenated in chain order
    combine to the whole run's mean and variance, bit for bit.  Blocks are combined in order
    (Chan et al.), one at a time, so the temporaries are (n_kept, dim), not the size of
    ``moments``.
    """
    n_blocks, n_kept, _, d = moments.shape
    if n_kept == 0:
        return np.zeros((0, d)), np.zeros((0, d))
    m = counts.astype(np.float64)
    total = m.sum()

    def block_mean(b):
        return moments[b, :, 0] + moments[b, :, 1] / m[b]

    mean = np.zeros((n_kept, d))
    for b in range(n_blocks):
        mean += m[b] * block_mean(b)
    mean /= total
    within = np.zeros((n_kept, d))
    between = np.zeros((n_kept, d))
    for b in range(n_blocks):
        s1, s2 = moments[b, :, 1], moments[b, :, 2]
        within += np.maximum(s2 - s1 * s1 / m[b], 0.0)
        between += m[b] * (block_mean(b) - mean) ** 2
    return mean, (within + between) / total


def _is_index(key):
    """Whether ``key`` indexes an array: integers, slices, Ellipsis, None, or a tuple."""
    if isinstance(key, tuple):
        return all(_is_index(k) for k in key)
    return (key is Ellipsis or key is None or isinstance(key, (int, np.integer, slice))
            and not isinstance(key, bool))


class Diagnostics(Mapping):
    """Named arrays of a run, readable as ``d["energy"]`` and ``d.energy``.

    Parameters
    ----------
    **arrays
        Name to array.  Samplers record ``energy`` ``(n_kept, n_samples)``,
        ``acceptance_rate`` ``(n_kept,)`` (fraction of chains accepted; 1 for unadjusted
        Langevin), ``mean`` and ``var`` ``(n_kept, dim)`` across chains, ``grad_norm``
        ``(n_kept, n_samples)``, ``step_size`` ``(n_kept,)`` and ``divergences``
        ``(n_samples,)``; extra names (tuned values, say) are kept as given.
    """

    #: Fields with a kept-step axis, recorded at each kept step; the step axis is axis 0
    #: of every one: ``energy`` (n_kept, n_samples), ``acceptance_rate`` (n_kept,),
    #: ``mean`` and ``var`` (n_kept, dim), ``grad_norm`` (n_kept, n_samples),
    #: ``step_size`` (n_kept,), ``accepted`` (n_kept, n_samples).  Runs that continue
    #: each other join these along axis 0.  (``trajectory``, present with
    #: ``return_trajectory=True``, is the samples (n_samples, n_kept, dim), not listed.)
    PER_STEP_FIELDS = ("energy", "acceptance_rate", "mean", "var", "grad_norm",
                       "step_size", "accepted")
    #: Fields with one value per chain, counts over the steps of the run that returned
    #: them: ``divergences`` and ``n_accepted``, each (n_samples,), no step axis.  Runs
    #: that continue each other add these.
    PER_CHAIN_FIELDS = ("divergences", "n_accepted")

    def __init__(self, **arrays):
        self._arrays = dict(arrays)

    def __getitem__(self, name):
        """``d["energy"]`` by name; integers, slices and tuples of them index
        :meth:`stacked` as TorchEBM's ``(n_kept, 4, n_samples, dim)`` tensor does
        (``d[:, 2, 0, 0]`` is chain 0's energy at each kept step)."""
        if not isinstance(name, str):
            if _is_index(name):
                return self.stacked()[name]
            raise TypeError(f"diagnostics are indexed by a name such as 'energy', or by "
                            f"integers and slices as TorchEBM's stacked layout; got "
                            f"{type(name).__name__}")
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(f"no diagnostic {name!r}; recorded: {sorted(self._arrays)}") from None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._arrays[name]
        except KeyError:
            raise AttributeError(
                f"no diagnostic {name!r}; recorded: {sorted(self._arrays)}"
            ) from None

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._arrays))

    def stacked(self):
        """TorchEBM's old layout: ``(n_kept, 4, n_samples, dim)``.

        Index 1 is (mean, var, energy, acceptance): per-step mean and variance across
        chains repeated over chains, each chain's energy repeated over coordinates, and
        the acceptance rate repeated over both.
        """
        mean, var, energy, rate = (self[k] for k in ("mean", "var", "energy", "acceptance_rate"))
        xp = array_namespace(mean, var, energy, rate)
        n_kept, n_samples = energy.shape
        dim = mean.shape[1]
        shape = (n_kept, n_samples, dim)
        parts = (
            xp.broadcast_to(mean[:, None, :], shape),
            xp.broadcast_to(var[:, None, :], shape),
            xp.broadcast_to(energy[:, :, None], shape),
            xp.broadcast_to(rate[:, None, None], shape),
        )
        return xp.stack(parts, axis=1)

    def summary(self):
        """A small dict of Python scalars describing the run.

        Keys (present when the arrays behind them were recorded): ``n_kept``,
        ``final_energy_mean``, ``acceptance_rate`` (mean over kept steps),
        ``final_step_size``, ``grad_norm_mean``, ``divergences`` (total over chains), and
        with a ``trajectory`` of at least 4 kept steps ``ess_bulk_min``, ``ess_tail_min``
        and (2 chains or more) ``rhat_max`` over coordinates.
        """
        home = {k: to_numpy(v) for k, v in self._arrays.items()}
        out = {}
        if "energy" in home:
            out["n_kept"] = int(home["energy"].shape[0])
            if home["energy"].shape[0]:
                out["final_energy_mean"] = float(np.mean(home["energy"][-1]))
        if "acceptance_rate" in home and home["acceptance_rate"].size:
            out["acceptance_rate"] = float(np.mean(home["acceptance_rate"]))
        if "step_size" in home and home["step_size"].size:
            out["final_step_size"] = float(home["step_size"][-1])
        if "grad_norm" in home and home["grad_norm"].size:
            out["grad_norm_mean"] = float(np.mean(home["grad_norm"]))
        if "divergences" in home:
            out["divergences"] = int(np.sum(home["divergences"]))
        traj = home.get("trajectory")
        if traj is not None and traj.ndim == 3 and traj.shape[1] >= 4:
            out["ess_bulk_min"] = float(np.nanmin(ess(traj, "bulk")))
            out["ess_tail_min"] = float(np.nanmin(ess(traj, "tail")))
            if traj.shape[0] >= 2:
                out["rhat_max"] = float(np.nanmax(rhat(traj)))
        return out

    def to_numpy(self):
        """The same record with every array brought home as NumPy."""
        return Diagnostics(**{k: to_numpy(v) for k, v in self._arrays.items()})

    def to_arviz(self, trajectory=None, *, var_name="x", coords=None, dims=None):
        """The run as ArviZ data: the draws and the per-draw sample statistics.

        ArviZ is optional (``pip install arviz``, or ``pip install npebm[arviz]``) and
        imported here, on first use.  ``az.summary``, ``az.plot_trace`` and the rest
        then work on the result; its ESS and R-hat are those of :func:`ess` and
        :func:`rhat` on the same draws.

        Parameters
        ----------
        trajectory : array (n_chains, n_kept, ...) or dict of str to such arrays, optional
            The draws.  By default the record's own ``trajectory``, present when the
            run was ``sample(..., return_trajectory=True, return_diagnostics=True)``;
            otherwise pass the kept states here.  A dict gives several variables.
        var_name : str
            The name of the draws' variable in the posterior (default ``"x"``), when
            ``trajectory`` is an array.
        coords, dims : dict, optional
            Passed to ArviZ's ``from_dict``: ``dims={"x": ["coord"]}`` names the
            coordinate axis (ArviZ's default is ``x_dim_0``), ``coords={"coord":
            [...]}`` labels it.

        Returns
        -------
        arviz.InferenceData (ArviZ < 1) or xarray.DataTree (ArviZ >= 1)
            Group ``posterior``: the draws, dimensions ``(chain, draw, ...)``: chain i
            is the record's chain i, draw t its t-th kept step.  Group
            ``sample_stats``, each ``(chain, draw)``, from the fields recorded per kept
            step (absent fields are left out):

            - ``lp``: -``energy``, the unnormalised log density log p(x) = -E(x) of the
              draw (ArviZ's ``lp``).  The potential is not put under ArviZ's
              ``energy``, which means the Hamiltonian (for ``plot_energy`` and BFMI);
              a sampler that records a per-step ``hamiltonian`` gets it there.
            - ``acceptance_rate``: whether the chain's proposal at that step was
              accepted (``accepted``, as 0.0 / 1.0; its mean over draws is the chain's
              acceptance rate).  The record's own ``acceptance_rate``, one fraction
              over all chains per step, is not per chain and is left out.
            - ``step_size``: the step size of each kept step, repeated over chains.
            - ``grad_norm``: |grad E(x)| of the draw.
            - a sampler's info fields (``InfoField``, any other field shaped
              ``(n_kept, n_chains)``), under their own names except for ArviZ's
              conventional ones: ``n_leapfrog`` as ``n_steps``, ``divergent`` as
              ``diverging``; NUTS's ``tree_depth`` and ``energy_error`` as they are.

            Per-chain totals (``divergences``, ``n_accepted``) are not per draw and
            stay in the record; ``diverging`` appears only when a sampler records it
            per step.

        Raises
        ------
        ImportError
            ArviZ is not installed; the message says how to install it.
        ValueError
            No draws (neither ``trajectory`` nor a recorded one), or draws whose chains
            and kept steps do not match the record's.
        """
        az = _import_arviz()
        if trajectory is None:
            if "trajectory" not in self._arrays:
                raise ValueError(
                    "to_arviz needs the draws: run sample(..., return_trajectory=True, "
                    "return_diagnostics=True), which records them in the diagnostics, or "
                    "pass them as to_arviz(trajectory=samples)")
            trajectory = self._arrays["trajectory"]
        if isinstance(trajectory, Mapping):
            posterior = {str(k): _host(v) for k, v in trajectory.items()}
            least = 2
        else:
            posterior = {str(var_name): _host(trajectory)}
            least = 3
        if not posterior:
            raise ValueError("trajectory is an empty dict: no draws to convert")
        shapes = {k: v.shape for k, v in posterior.items()}
        lead = {s[:2] for s in shapes.values()}
        if len(lead) != 1 or any(len(s) < least for s in shapes.values()):
            raise ValueError(
                "the draws must be shaped (n_chains, n_kept, dim) as "
                "sample(..., return_trajectory=True) returns them (the final states "
                f"(n_samples, dim) are not draws); got {shapes}")
        n_chains, n_kept = lead.pop()
        stats = self._arviz_sample_stats(n_chains, n_kept)
        attrs = {"inference_library": "npebm", "inference_library_version": _npebm_version()}
        with warnings.catch_warnings():
            # Many chains of few draws are npebm's usual run, correctly laid out.
            warnings.filterwarnings("ignore", message="More chains")
            if _major_version(az) >= 1:
                groups = {"posterior": posterior}
                if stats:
                    groups["sample_stats"] = stats
                return az.from_dict(groups, coords=coords, dims=dims, attrs={"/": attrs})
            return az.from_dict(posterior=posterior, sample_stats=stats or None,
                                coords=coords, dims=dims, attrs=attrs)

    def _arviz_sample_stats(self, n_chains, n_kept):
        """``{ArviZ name: (n_chains, n_kept) NumPy array}`` of the per-step fields."""
        per_step = (n_kept, n_chains)
        stats = {}
        for name, value in self._arrays.items():
            if name in _NOT_SAMPLE_STATS or getattr(value, "ndim", 0) != 2:
                continue
            if tuple(value.shape) != per_step:
                if name in ("energy", "accepted"):
                    raise ValueError(
                        f"the draws have {n_chains} chains and {n_kept} kept steps but the "
                        f"record's {name} is {tuple(value.shape)}, (n_kept, n_chains): "
                        "pass the trajectory of the run that gave these diagnostics")
                continue
            a = _host(value).T
            if name == "energy":
                a = -a
            elif name == "accepted":
                a = a.astype(np.float64)
            elif name in ("divergent", "diverging"):
                a = a.astype(bool)
            arviz_name = _ARVIZ_NAMES.get(name, name)
            if arviz_name in stats and name not in _ARVIZ_NAMES:
                continue  # a conventional name already given by its npebm field
            stats[arviz_name] = np.ascontiguousarray(a)
        step = self._arrays.get("step_size")
        if step is not None and getattr(step, "shape", None) == (n_kept,):
            stats["step_size"] = np.ascontiguousarray(
                np.broadcast_to(_host(step)[None, :], (n_chains, n_kept)))
        return stats

    def __repr__(self):
        items = ", ".join(f"{k}{tuple(getattr(v, 'shape', ()))}" for k, v in self._arrays.items())
        return f"Diagnostics({items})"


#: npebm's per-step fields renamed to ArviZ's conventional ``sample_stats`` names by
#: :meth:`Diagnostics.to_arviz` (``energy`` also negated: ArviZ's lp is the log density).
_ARVIZ_NAMES = {
    "energy": "lp",
    "accepted": "acceptance_rate",
    "n_leapfrog": "n_steps",
    # NUTS's acceptance statistic is what ArviZ (and Stan) call acceptance_rate: it
    # replaces the fraction of steps that moved.
    "acceptance_stat": "acceptance_rate",
    "divergent": "diverging",
    "hamiltonian": "energy",
}
#: Fields that :meth:`Diagnostics.to_arviz` never gives to ``sample_stats`` even when
#: shaped like one (``mean`` and ``var`` are (n_kept, dim); tempering's bookkeeping).
_NOT_SAMPLE_STATS = frozenset({"trajectory", "mean", "var", "block_sums", "block_counts",
                               "index_process", "rejection_history", "acceptance_rate",
                               "step_size"})


def _import_arviz():
    """``arviz``, imported on first use, or an ImportError saying how to install it."""
    try:
        import arviz
    except ImportError as exc:
        raise ImportError("Diagnostics.to_arviz() needs ArviZ, which is not installed: "
                          "pip install arviz (or pip install 'npebm[arviz]')") from exc
    return arviz


def _major_version(module):
    head = str(getattr(module, "__version__", "0")).split(".")[0]
    return int(head) if head.isdigit() else 0


def _npebm_version():
    from ._version import __version__

    return __version__


def _host(a):
    """``a`` as a NumPy array (from CuPy, a CPU torch tensor or a list)."""
    return np.asarray(to_numpy(a))


# ------------------------------------------------------------------ chain statistics
# Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021), "Rank-normalization, folding, and
# localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis
# 16(2).  The estimators follow ArviZ's (and Stan's) definitions step by step, so they
# agree with ArviZ on the same draws; only NumPy is used.

def _as_draws(trajectory):
    """``(n_chains, n_draws, k)`` float64 view of a trajectory and whether to squeeze."""
    a = np.asarray(to_numpy(trajectory), dtype=np.float64)
    if a.ndim == 2:
        return a[:, :, None], True
    if a.ndim != 3:
        raise ValueError("trajectory must have shape (n_chains, n_draws, dim) or "
                         f"(n_chains, n_draws), got {a.shape}")
    return a, False


def _per_coordinate(func, trajectory, **kwargs):
    a, squeeze = _as_draws(trajectory)
    out = np.array([func(a[:, :, j], **kwargs) for j in range(a.shape[2])])
    return float(out[0]) if squeeze else out


def _ppf(p):
    """Standard normal quantiles (Wichura 1988, AS241, ~1e-16 relative)."""
    p = np.asarray(p, dtype=np.float64)
    q = p - 0.5
    out = np.empty_like(p)
    central = np.abs(q) <= 0.425
    r = 0.180625 - q[central] ** 2
    a = [3.387132872796366608, 133.14166789178437745, 1971.5909503065514427,
         13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
         33430.575583588128105, 2509.0809287301226727]
    b = [1.0, 42.313330701600911, 687.18700749205790, 5394.1960214247511, 21213.794301586595,
         39307.895800092710, 28729.085735721943, 5226.4952788528544]
    num = ((((((a[7] * r + a[6]) * r + a[5]) * r + a[4]) * r + a[3]) * r + a[2]) * r + a[1]) \
        * r + a[0]
    den = ((((((b[7] * r + b[6]) * r + b[5]) * r + b[4]) * r + b[3]) * r + b[2]) * r + b[1]) \
        * r + b[0]
    out[central] = q[central] * num / den
    tail = ~central
    r = np.where(q[tail] < 0, p[tail], 1.0 - p[tail])
    r = np.sqrt(-np.log(r))
    near = r <= 5.0
    c = [1.42343711074968357734, 4.63033784615654529590, 5.76949722146069140550,
         3.64784832476320460504, 1.27045825245236838258, 0.241780725177450611770,
         0.0227238449892691845833, 7.74545014278341407640e-4]
    d = [1.0, 2.05319162663775882187, 1.67638483018380384940, 0.689767334985100004550,
         0.148103976427480074590, 0.0151986665636164571966, 5.47593808499534494600e-4,
         1.05075007164441684324e-9]
    e = [6.65790464350110377720, 5.46378491116411436990, 1.78482653991729133580,
         0.296560571828504891230, 0.0265321895265761230930, 0.00124266094738807843860,
         2.71155556874348757815e-5, 2.01033439929228813265e-7]
    f = [1.0, 0.599832206555887937690, 0.136929880922735805310, 0.0148753612908506148525,
         7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
         2.04426310338993978564e-15]

    def poly(coef, x):
        acc = np.full_like(x, coef[-1])
        for co in coef[-2::-1]:
            acc = acc * x + co
        return acc

    rn = r[near] - 1.6
    rf = r[~near] - 5.0
    val = np.empty_like(r)
    val[near] = poly(c, rn) / poly(d, rn)
    val[~near] = poly(e, rf) / poly(f, rf)
    out[tail] = np.where(q[tail] < 0, -val, val)
    return out


def _rank_average(x):
    """Ranks 1..n of the flattened ``x``, ties sharing their average rank."""
    flat = x.ravel()
    order = np.argsort(flat, kind="mergesort")
    sorted_ = flat[order]
    new_group = np.concatenate(([True], sorted_[1:] != sorted_[:-1]))
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], flat.size)
    average = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(flat.size)
    ranks[order] = average[group]
    return ranks.reshape(x.shape)


def _z_scale(x):
    """Rank-normalise: ranks back-transformed with Blom's 3/8 offset, then to N(0, 1)."""
    c = 3.0 / 8.0
    return _ppf((_rank_average(x) - c) / (x.size - 2 * c + 1))


def _split(x):
    half = x.shape[1] // 2
    return np.vstack((x[:, :half], x[:, -half:]))


def _autocov(x):
    n = x.shape[1]
    m = 1 << int(np.ceil(np.log2(2 * n)))
    centred = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _ess_raw(x):
    """ESS of (n_chains, n_draws) draws with Geyer's initial monotone sequence."""
    if not np.all(np.isfinite(x)):
        return np.nan
    if np.max(x) - np.min(x) < np.finfo(float).resolution:
        return float(x.size)
    n_chain, n_draw = x.shape
    acov = _autocov(x)
    chain_mean = x.mean(axis=1)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(chain_mean, ddof=1)
    rho = np.zeros(n_draw)
    even = 1.0
    rho[0] = even
    odd = 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[1] = odd
    t = 1
    while t < n_draw - 3 and even + odd > 0.0:
        even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if even + odd >= 0:
            rho[t + 1] = even
            rho[t + 2] = odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    n = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[:max_t + 1]) + np.sum(rho[max_t + 1:max_t + 2])
    tau = max(tau, 1.0 / np.log10(n))
    return n / tau


def _ess_one(x, method):
    if x.shape[1] < 4:
        return np.nan
    if method == "bulk":
        return _ess_raw(_z_scale(_split(x)))
    if method == "tail":
        lo, hi = np.quantile(x, [0.05, 0.95])
        return min(_ess_raw(_split((x <= lo).astype(float))),
                   _ess_raw(_split((x <= hi).astype(float))))
    if method == "mean":
        return _ess_raw(_split(x))
    return _ess_raw(_split((x - x.mean()) ** 2))  # "sd"


def _rhat_raw(x):
    n = x.shape[1]
    between = n * np.var(x.mean(axis=1), ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1))
    return np.sqrt((between / within + n - 1) / n)


def _rhat_one(x):
    if x.shape[0] < 2 or x.shape[1] < 4 or not np.all(np.isfinite(x)):
        return np.nan
    s = _split(x)
    folded = np.abs(s - np.median(s))
    return max(_rhat_raw(_z_scale(s)), _rhat_raw(_z_scale(folded)))


def _mcse_one(x, method):
    if x.shape[1] < 4:
        return np.nan
    if method == "mean":
        return np.std(x, ddof=1) / np.sqrt(_ess_one(x, "mean"))
    c2 = (x - x.mean()) ** 2
    evar = c2.mean()
    varvar = ((c2 ** 2).mean() - evar ** 2) / _ess_one(c2, "mean")
    return np.sqrt(varvar / evar / 4)


_ESS_METHODS = ("bulk", "tail", "mean", "sd")


def ess(trajectory, method="bulk"):
    """Effective sample size per coordinate (Vehtari et al. 2021), as ArviZ computes it.

    Parameters
    ----------
    trajectory : array, shape (n_chains, n_draws, dim) or (n_chains, n_draws)
        Draws, e.g. ``sampler.sample(..., return_trajectory=True)``.
    method : {"bulk", "tail", "mean", "sd"}
        Rank-normalised split ESS of the bulk, the minimum of the 5 % and 95 % quantile
        ESS, or the plain split ESS of x or of (x - mean)².

    Returns
    -------
    ndarray (dim,) or float
        NaN where there are fewer than 4 draws or non-finite values.
    """
    if method not in _ESS_METHODS:
        raise ValueError(f"method must be one of {_ESS_METHODS}, got {method!r}")
    return _per_coordinate(_ess_one, trajectory, method=method)


def rhat(trajectory):
    """Rank-normalised split R-hat per coordinate (Vehtari et al. 2021), as ArviZ's.

    The maximum of the bulk and the folded (tail) R-hat; NaN with fewer than 2 chains
    or 4 draws.  Values above 1.01 suggest the chains have not mixed.
    """
    return _per_coordinate(_rhat_one, trajectory)


def mcse(trajectory, method="mean"):
    """Monte Carlo standard error of the mean or of the sd per coordinate, as ArviZ's."""
    check_choice(method, "method", ("mean", "sd"))
    return _per_coordinate(_mcse_one, trajectory, method=method)


def autocorrelation(trajectory):
    """Autocorrelation by FFT for every lag, per chain and coordinate.

    Returns an array shaped like ``trajectory`` (lag along the draw axis), 1 at lag 0.
    """
    a, squeeze = _as_draws(trajectory)
    moved = np.moveaxis(a, 2, 1).reshape(-1, a.shape[1])
    cov = _autocov(moved)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / cov[:, :1]
    corr = np.moveaxis(corr.reshape(a.shape[0], a.shape[2], a.shape[1]), 1, 2)
    return corr[:, :, 0] if squeeze else corr
