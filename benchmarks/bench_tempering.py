"""Multimodal targets: npebm's ParallelTempering and AIS against ptemcee, reddemcee, dynesty.

Not a test: prints, per workload and contender, the median over ``--repeats`` timed runs
(each with its own seed, after one untimed warm-up run at reduced size, which for npebm
includes compilation unless NUMBA_CACHE_DIR already holds it) of

- ``time s``: the wall time of one run (building the sampler, burn-in and sampling);
- ``|dlogZ|``: |log Z estimate - truth|, and ``SE``: the standard error the contender
  states for it (npebm: spread over ladders / groups of particles; ptemcee: its
  thermodynamic-integration error; reddemcee: its stepping-stone MC error; dynesty:
  ``logzerr``);
- ``|dP|``: |P(x > 0) - truth| of the first coordinate of each pair, averaged over the 16
  pairs (Many Well), or |P(x < 0) - 0.3|, the weight of the left mode (mixture), from the
  kept beta = 1 draws, or the weighted particles (AIS) and weighted dead points (dynesty);
- ``trips/s``: round trips (bottom -> top -> bottom of a ladder) per second, PT only;
- ``ESS/s``: min over coordinates of ``npebm.diagnostics.ess`` (bulk) of the kept beta = 1
  chains (npebm: one per ladder / chain; ptemcee, reddemcee: the 64 cold walkers of one
  ensemble, which are not independent chains), over the run's own time;
- ``dlogZ*s``, ``dP*s``: error x time (lower is better: the error bought per second).

Workloads (float64; every contender uses the same Gaussian reference q, as npebm's
beta = 0 end and as the normalised prior of the peers, whose log-likelihood is then
-E(x) - log q(x), so that all estimate log Z = log of the integral of exp(-E)):

- ``MW32``: Many Well, 32-d, 16 independent pairs (x, y), each E = x^4 - 6x^2 - 0.5x +
  0.5y^2; q = N(0, I).  Truth: log Z = 16 (ln 11784.50927 + 0.5 ln 2 pi) = 164.6957,
  P(x > 0) = 0.8443 for each pair.
- ``MIX2``: the 2-D mixture of tests/test_tempering.py, 0.3 N((-5, 0), I) + 0.7 N((5, 0),
  I), normalised (log Z = 0); q = N(0, 16 I).  Truth: P(x < 0) = 0.3.

Contenders, each in its own child process (imports and thread pools never meet):

- ``pt``: ``ParallelTempering(HamiltonianMonteCarlo(E, step_size, n_leapfrog_steps),
  n_temperatures=T)``, adaptive schedule, ``sample(n_samples=16 ladders, burn_in=B,
  n_steps=N, return_trajectory=True, return_diagnostics=True)``; MW32: step 0.1, 5
  leapfrog steps, T = 12, B = 1000, N = 2000; MIX2: step 0.4, 5, T = 8, B = 500, N = 2000.
- ``ais``: ``AnnealedImportanceSampling(transition=HamiltonianMonteCarlo(...), n_steps=2)``
  (adaptive CESS schedule, cess 0.999), 1024 particles, the same HMC settings.
- ``hmc``: plain ``HamiltonianMonteCarlo`` with the same settings and the same gradient
  budget as ``pt`` (16 T chains x (B + N) proposals; PT's extra evaluation per step for
  its swaps not counted), started from N(0, I) draws, burn-in B: it keeps each chain's
  mode, so its mode weights are those of the start.
- ``ptemcee``: ``ptemcee.Sampler`` (1.0.0, Vousden et al.), 16 temperatures (its default
  ladder) x 64 walkers, 900 iterations, the first third discarded, log Z from
  ``log_evidence_estimate``.  It still calls ``np.float`` and ``np.trapz`` (gone from
  NumPy 2.x), so the worker aliases them to ``float`` and ``np.trapezoid``.
- ``reddemcee``: ``reddemcee.PTSampler`` (its defaults: adaptive ladder "SAR"), 16
  temperatures x 64 walkers, 900 sweeps of 1 step, the first third discarded, log Z from
  ``get_evidence_ss`` (stepping stones).  Seeded through its private ``_random``.
- ``dynesty``: ``dynesty.NestedSampler`` (static, its default bound and sampler), nlive
  500, prior transform ``ndtri`` (q), default stopping rule.

The peers evaluate the target one point at a time in NumPy (their interface).  The
earlier measurement (printed as a note) did not record its iteration counts; 900
(``--peer-iterations``) is what its times suggest from the per-iteration costs seen here
(ptemcee about 35 ms, reddemcee about 55 ms per iteration on MW32, 2 cores).  ``--quick``
divides steps, particles, iterations and nlive by about 10 (a smoke run, not a
measurement).

Timed runs go in rounds: in round r every contender does one run (seed r + 1), in an
order rotated by r, so slow drift of the machine hits all contenders alike.  Threads:
every child gets NUMBA_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and
OPENBLAS_NUM_THREADS = ``--threads`` (default: all usable cores, at most 2) and is pinned
to that many cores.

Run (peers optional; each missing one is skipped with its reason)::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_tempering.py [--quick]
        [--workloads MW32,MIX2] [--contenders pt,ais,hmc,ptemcee,reddemcee,dynesty]
        [--repeats 3] [--threads 2] [--peer-iterations 900] [--nlive 500]
        [--peer-python /tmp/benchvenv/bin/python]

The peers live in their own venv::

    /tmp/benchvenv/bin/pip install ptemcee reddemcee dynesty
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import warnings

import numpy as np

from _harness import Child, machine_lines, thread_env  # benchmarks/ is sys.path[0]

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

BENCHVENV = "/tmp/benchvenv/bin/python"
CONTENDERS = ("pt", "ais", "hmc", "ptemcee", "reddemcee", "dynesty")
PEERS = ("ptemcee", "reddemcee", "dynesty")
LADDERS = 16

#: Measured earlier on 2 cores, Many Well 32-d (a note, not a result of this script):
#: (time s, |log Z error|, stated error, |P error|).
EARLIER = {"ptemcee": (28, 4.6, 1.4, 0.18), "reddemcee": (48, 4.5, 0.16, 0.20),
           "dynesty nlive 500": (79, 2.8, 0.45, 0.055)}
EARLIER_HMC_P = 0.62


# ---------------------------------------------------------------------------------
# Workloads and targets

class Workload:
    def __init__(self, name, target, dim, log_z, p_true, ref_var, step_size, n_leapfrog,
                 n_temperatures, burn_in, n_steps, ais_particles, ais_steps, ais_cess,
                 iterations, nlive):
        self.name, self.target, self.dim = name, target, dim
        self.log_z, self.p_true, self.ref_var = log_z, p_true, ref_var
        self.step_size, self.n_leapfrog = step_size, n_leapfrog
        self.n_temperatures, self.burn_in, self.n_steps = n_temperatures, burn_in, n_steps
        self.ais_particles, self.ais_steps, self.ais_cess = ais_particles, ais_steps, ais_cess
        self.iterations, self.nlive = iterations, nlive

    def as_dict(self):
        return dict(vars(self))

    def scaled(self, f):
        """The same workload with steps, particles, iterations and nlive divided by f."""
        d = self.as_dict()
        for k, low in (("burn_in", 16), ("n_steps", 20), ("ais_particles", 64),
                       ("iterations", 12), ("nlive", 40)):
            d[k] = max(low, int(d[k] / f))
        return Workload(**d)

    def describe(self):
        return (f"{self.name}: {self.target}, {self.dim}-d, q = N(0, {self.ref_var:g} I); "
                f"PT {LADDERS} ladders x {self.n_temperatures} temperatures, HMC step "
                f"{self.step_size} x {self.n_leapfrog}, burn-in {self.burn_in} + "
                f"{self.n_steps} steps; AIS {self.ais_particles} particles x "
                f"{self.ais_steps} steps/stage, cess {self.ais_cess}; peers "
                f"{self.iterations} iterations, nlive {self.nlive}")


WORKLOADS = [
    Workload("MW32", "many_well", 32, 16 * (math.log(11784.50927) + 0.5 * math.log(2 * math.pi)),
             0.8443, 1.0, 0.1, 5, 12, 1000, 2000, 1024, 2, 0.999, 900, 500),
    Workload("MIX2", "mixture", 2, 0.0, 0.3, 16.0, 0.4, 5, 8, 500, 2000, 1024, 2, 0.999,
             900, 500),
]
W_LEFT = 0.3


def npebm_energy(w):
    """The built-ins: ManyWellEnergy, and GaussianMixtureEnergy (normalised: log Z = 0)."""
    from npebm.energies import GaussianMixtureEnergy, ManyWellEnergy
    if w.target == "many_well":
        return ManyWellEnergy(w.dim)
    return GaussianMixtureEnergy([[-5.0, 0.0], [5.0, 0.0]], 1.0, [W_LEFT, 1 - W_LEFT])


def numpy_energy(w):
    """E(x) of one point (1-D array), in NumPy: the peers' interface."""
    if w.target == "many_well":
        def energy(x):
            a = x[0::2]
            b = x[1::2]
            return float(np.sum(a * a * (a * a - 6.0) - 0.5 * a + 0.5 * b * b))
        return energy
    lw = (math.log(W_LEFT), math.log(1.0 - W_LEFT))
    c = math.log(2.0 * math.pi)

    def energy(x):
        r = 0.5 * x[1] * x[1]
        l0 = lw[0] - 0.5 * (x[0] + 5.0) ** 2 - r
        l1 = lw[1] - 0.5 * (x[0] - 5.0) ** 2 - r
        m = max(l0, l1)
        return -(m + math.log(math.exp(l0 - m) + math.exp(l1 - m))) + c
    return energy


def reference_parts(w):
    """(log q(x) of one point, the peers' log-likelihood -E - log q) for q = N(0, v I)."""
    energy = numpy_energy(w)
    v = w.ref_var
    c = -0.5 * w.dim * math.log(2.0 * math.pi * v)

    def log_q(x):
        return c - 0.5 * float(x @ x) / v

    def log_like(x):
        return -energy(x) - log_q(x)
    return log_q, log_like


def mode_indicator(w, x):
    """Per draw (..., dim) -> (...,): the share of pairs with x > 0 (Many Well), or
    1{x_0 < 0} (mixture)."""
    x = np.asarray(x)
    if w.target == "many_well":
        return (x[..., 0::2] > 0).mean(axis=-1)
    return (x[..., 0] < 0).astype(float)


def min_ess(traj):
    """min over coordinates of the bulk ESS of (chains, draws, dim) draws."""
    from npebm.diagnostics import ess
    if traj is None or traj.shape[1] < 4:
        return None
    e = np.asarray(ess(np.asarray(traj, np.float64), "bulk"))
    return float(np.nanmin(e)) if np.isfinite(e).any() else None


def start_points(w, n, seed):
    return np.random.default_rng(seed).normal(size=(n, w.dim))


# ---------------------------------------------------------------------------------
# Contenders (built in the worker only: the parent never imports Numba or the peers).
# run(w, seed) returns (seconds, result dict); metrics are computed after the clock.

class NpebmBase:
    def __init__(self):
        import numba

        import npebm
        from npebm.samplers import ParallelTempering  # noqa: F401  (fails if missing)
        self.versions = {"npebm": getattr(npebm, "__version__", "?"), "numpy": np.__version__,
                         "numba": numba.__version__}
        self.energies = {}

    def energy(self, w):
        if w.name not in self.energies:
            self.energies[w.name] = npebm_energy(w)
        return self.energies[w.name]

    def hmc(self, w, seed):
        from npebm.samplers import HamiltonianMonteCarlo
        return HamiltonianMonteCarlo(self.energy(w), step_size=w.step_size,
                                     n_leapfrog_steps=w.n_leapfrog, seed=seed)


class PtContender(NpebmBase):
    def run(self, w, seed):
        from npebm.samplers import ParallelTempering
        t0 = time.perf_counter()
        pt = ParallelTempering(self.hmc(w, seed), n_temperatures=w.n_temperatures,
                               reference=(np.zeros(w.dim), w.ref_var))
        x, d = pt.sample(n_samples=LADDERS, n_steps=w.n_steps, burn_in=w.burn_in,
                         return_trajectory=True, return_diagnostics=True)
        seconds = time.perf_counter() - t0
        return seconds, dict(
            log_z=float(d["log_z"]), log_z_se=float(d["log_z_se"]),
            p=float(mode_indicator(w, x).mean()), ess=min_ess(x),
            trips=int(np.sum(d["round_trips"])), barrier=float(d["barrier"]),
            suggested_t=int(d["suggested_n_temperatures"]),
            swap_acc_min=float(np.nanmin(d["swap_acceptance"])),
            accept=float(np.mean(d["acceptance_rate"])))


class AisContender(NpebmBase):
    def run(self, w, seed):
        from npebm.samplers import AnnealedImportanceSampling
        t0 = time.perf_counter()
        ais = AnnealedImportanceSampling(transition=self.hmc(w, seed), n_steps=w.ais_steps,
                                         cess=w.ais_cess,
                                         reference=(np.zeros(w.dim), w.ref_var))
        r = ais.run(w.ais_particles)
        seconds = time.perf_counter() - t0
        p = float(np.sum(r.weights * mode_indicator(w, r.samples)))
        return seconds, dict(log_z=float(r.log_z), log_z_se=float(r.log_z_se), p=p,
                             weights_ess=float(r.ess), stages=len(r.betas) - 1)


class HmcContender(NpebmBase):
    def run(self, w, seed):
        n = LADDERS * w.n_temperatures
        x0 = start_points(w, n, seed)
        t0 = time.perf_counter()
        x = self.hmc(w, seed).sample(x=x0, n_steps=w.n_steps, burn_in=w.burn_in,
                                     return_trajectory=True)
        seconds = time.perf_counter() - t0
        return seconds, dict(p=float(mode_indicator(w, x).mean()), ess=min_ess(x))


def _numpy2_shims():
    """ptemcee 1.0.0 (and parts of reddemcee) still use names NumPy 2 removed."""
    if not hasattr(np, "float"):
        np.float = float
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid


WALKERS, PEER_TEMPS = 64, 16


class PtemceeContender:
    def __init__(self):
        _numpy2_shims()
        import ptemcee
        self.versions = {"ptemcee": ptemcee.__version__, "numpy": np.__version__}

    def run(self, w, seed):
        import ptemcee
        log_q, log_like = reference_parts(w)
        burn = w.iterations // 3
        p0 = start_points(w, PEER_TEMPS * WALKERS, seed).reshape(PEER_TEMPS, WALKERS, w.dim)
        p0 *= math.sqrt(w.ref_var)
        t0 = time.perf_counter()
        s = ptemcee.Sampler(WALKERS, w.dim, log_like, log_q, ntemps=PEER_TEMPS,
                            random=np.random.RandomState(seed))
        s.run_mcmc(p0, w.iterations)
        log_z, err = s.log_evidence_estimate(fburnin=burn / w.iterations)
        seconds = time.perf_counter() - t0
        cold = s.chain[int(np.argmax(s.betas)), :, burn:, :]  # (walkers, draws, dim)
        return seconds, dict(log_z=float(log_z), log_z_se=float(err),
                             p=float(mode_indicator(w, cold).mean()), ess=min_ess(cold))


class ReddemceeContender:
    def __init__(self):
        _numpy2_shims()
        import reddemcee
        self.versions = {"reddemcee": reddemcee.__version__, "numpy": np.__version__}

    def run(self, w, seed):
        import reddemcee
        log_q, log_like = reference_parts(w)
        burn = w.iterations // 3
        p0 = start_points(w, PEER_TEMPS * WALKERS, seed).reshape(PEER_TEMPS, WALKERS, w.dim)
        p0 *= math.sqrt(w.ref_var)
        np.random.seed(seed)
        t0 = time.perf_counter()
        s = reddemcee.PTSampler(WALKERS, w.dim, log_like, log_q, ntemps=PEER_TEMPS)
        s._random = np.random.RandomState(seed)  # its RandomState is not seedable otherwise
        s.run_mcmc(p0, nsweeps=w.iterations, nsteps=1)
        log_z, err = s.get_evidence_ss(discard=burn)
        seconds = time.perf_counter() - t0
        chain = np.asarray(s.get_chain(discard=burn))  # (temps, draws, walkers, dim)
        cold = chain[int(np.argmax(s.betas))].transpose(1, 0, 2)
        return seconds, dict(log_z=float(log_z), log_z_se=float(err),
                             p=float(mode_indicator(w, cold).mean()), ess=min_ess(cold))


class DynestyContender:
    def __init__(self):
        import dynesty
        import scipy
        self.versions = {"dynesty": dynesty.__version__, "scipy": scipy.__version__,
                         "numpy": np.__version__}

    def run(self, w, seed, maxiter=None):
        import dynesty
        from scipy.special import ndtri
        _, log_like = reference_parts(w)
        sd = math.sqrt(w.ref_var)

        def prior_transform(u):
            return sd * ndtri(u)
        t0 = time.perf_counter()
        s = dynesty.NestedSampler(log_like, prior_transform, w.dim, nlive=w.nlive,
                                  rstate=np.random.default_rng(seed))
        s.run_nested(print_progress=False, maxiter=maxiter)
        r = s.results
        seconds = time.perf_counter() - t0
        wts = r.importance_weights()
        return seconds, dict(log_z=float(r.logz[-1]), log_z_se=float(r.logzerr[-1]),
                             p=float(np.sum(wts * mode_indicator(w, r.samples))),
                             ncall=int(np.sum(r.ncall)))


def make_contender(name):
    return {"pt": PtContender, "ais": AisContender, "hmc": HmcContender,
            "ptemcee": PtemceeContender, "reddemcee": ReddemceeContender,
            "dynesty": DynestyContender}[name]()


# ---------------------------------------------------------------------------------
# Worker process: a JSON-lines loop on stdin / a private copy of stdout

def worker_main(name, threads):
    try:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    except (AttributeError, OSError):
        pass
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol

    def reply(**kw):
        proto.write(json.dumps(kw) + "\n")

    try:
        contender = make_contender(name)
    except Exception as exc:  # ImportError, or an API mismatch
        reply(ok=False, reason=f"{type(exc).__name__}: {exc}")
        return
    reply(ok=True, versions=contender.versions)
    w = None
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg["op"]
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if op == "prepare":
                    # Warm-up: compilation (npebm) and imports, at a tenth of the size.
                    w = Workload(**msg["workload"])
                    small = w.scaled(10)
                    t0 = time.perf_counter()
                    if name == "dynesty":
                        contender.run(small, 0, maxiter=200)
                    else:
                        contender.run(small, 0)
                    reply(ok=True, warm_s=time.perf_counter() - t0)
                elif op == "run":
                    seconds, res = contender.run(w, msg["seed"])
                    msgs = sorted({re.sub(r"\d+(\.\d+)?", "#", str(c.message))[:160]
                                   for c in caught})
                    reply(ok=True, seconds=seconds, warnings=msgs, **res)
                elif op == "quit":
                    reply(ok=True)
                    return
        except Exception as exc:
            reply(ok=False, reason=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------
# Parent: drives the workers in interleaved rounds, prints the table

def _median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return statistics.median(vals) if vals else None


def _fmt(v, spec, width):
    return f"{'-' if v is None else format(v, spec):>{width}}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: about a tenth of the steps, particles, iterations, nlive")
    ap.add_argument("--workloads", default="MW32,MIX2")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default 3, quick 2)")
    ap.add_argument("--peer-iterations", type=int, default=None,
                    help="ptemcee iterations / reddemcee sweeps (default 900, quick 90)")
    ap.add_argument("--nlive", type=int, default=None, help="dynesty (default 500, quick 50)")
    ap.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))))
    ap.add_argument("--python", default=sys.executable, help="interpreter of the npebm workers")
    ap.add_argument("--peer-python",
                    default=BENCHVENV if os.path.exists(BENCHVENV) else sys.executable,
                    help="interpreter of the ptemcee, reddemcee and dynesty workers")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads)

    repeats = args.repeats or (2 if args.quick else 3)
    wanted = [s.strip() for s in args.workloads.split(",") if s.strip()]
    workloads = [w for w in WORKLOADS if w.name in wanted]
    if args.quick:
        workloads = [w.scaled(10) for w in workloads]
    for w in workloads:
        w.iterations = args.peer_iterations or w.iterations
        w.nlive = args.nlive or w.nlive
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(names) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    for line in machine_lines(args.threads):
        print(line)
    print(f"timing: median of {repeats} runs (seeds 1..{repeats}) after one warm-up run at "
          "a tenth of the size, interleaved rounds"
          + (" (--quick: reduced sizes, a smoke run)" if args.quick else ""))

    load_start = os.getloadavg()
    children, skipped = {}, []
    for name in names:
        child = Child(__file__, name, args.peer_python if name in PEERS else args.python,
                      ["--threads", str(args.threads)], thread_env(args.threads))
        if child.hello.get("ok"):
            children[name] = child
            vs = ", ".join(f"{k} {v}" for k, v in child.hello["versions"].items())
            print(f"  {name}: {vs}")
        else:
            print(f"  {name}: unavailable: {child.hello.get('reason')}")
            skipped.append((name, child.hello.get("reason")))
            child.close()
    sys.stdout.flush()

    results = {}  # (workload, contender) -> dict(warm_s, runs=[...], error)
    for w in workloads:
        print(f"\n{w.describe()}", flush=True)
        active = []
        for name, child in children.items():
            r = child.ask(op="prepare", workload=w.as_dict())
            if r.get("ok"):
                active.append(name)
                results[w.name, name] = dict(warm_s=r["warm_s"], runs=[], warnings=set())
                print(f"  {name}: warm-up {r['warm_s']:.2f} s", flush=True)
            else:
                print(f"  {name}: skipped: {r.get('reason')}", flush=True)
                skipped.append((f"{w.name} {name}", r.get("reason")))
        for rnd in range(repeats):
            k = rnd % max(1, len(active))
            for name in active[k:] + active[:k]:
                r = children[name].ask(op="run", seed=rnd + 1)
                row = results[w.name, name]
                if not r.get("ok"):
                    row["error"] = r.get("reason")
                    print(f"  {name} seed {rnd + 1}: failed: {r.get('reason')}", flush=True)
                    continue
                row["runs"].append(r)
                row["warnings"].update(r.get("warnings", []))
                extra = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in r.items()
                                  if k not in ("ok", "seconds", "warnings"))
                print(f"  {name} seed {rnd + 1}: {r['seconds']:.2f} s; {extra}", flush=True)
                time.sleep(0.2)  # let the previous child's spinning threads go idle
    for child in children.values():
        child.close()
    load_end = os.getloadavg()

    print("\nmedians over the timed runs; |dlogZ| = |log Z - truth|, SE = the stated error; "
          "|dP| = |P(x > 0) - 0.8443| (MW32) or |P(x < 0) - 0.3| (MIX2); trips/s = PT round "
          "trips per second; ESS/s = min bulk ESS over coordinates of the beta = 1 chains per "
          "second; dlogZ*s, dP*s = error x time")
    hdr = (f"{'workload':<9}{'contender':<11}{'time s':>8}{'warm s':>8}{'|dlogZ|':>9}"
           f"{'SE':>8}{'|dP|':>8}{'trips/s':>9}{'ESS/s':>8}{'dlogZ*s':>9}{'dP*s':>8}")
    print(hdr)
    print("-" * len(hdr))
    for w in workloads:
        for name in CONTENDERS:
            row = results.get((w.name, name))
            if not row or not row["runs"]:
                continue
            runs = row["runs"]
            for r in runs:
                s = r["seconds"]
                if r.get("log_z") is not None:
                    r["dlogz"] = abs(r["log_z"] - w.log_z)
                    r["dlogz_s"] = r["dlogz"] * s
                r["dp"] = abs(r["p"] - w.p_true)
                r["dp_s"] = r["dp"] * s
                r["trips_s"] = r["trips"] / s if "trips" in r else None
                r["ess_s"] = r["ess"] / s if r.get("ess") is not None else None
            print(f"{w.name:<9}{name:<11}{_fmt(_median(runs, 'seconds'), '.2f', 8)}"
                  f"{row['warm_s']:>8.1f}{_fmt(_median(runs, 'dlogz'), '.3f', 9)}"
                  f"{_fmt(_median(runs, 'log_z_se'), '.3f', 8)}"
                  f"{_fmt(_median(runs, 'dp'), '.4f', 8)}"
                  f"{_fmt(_median(runs, 'trips_s'), '.1f', 9)}"
                  f"{_fmt(_median(runs, 'ess_s'), '.1f', 8)}"
                  f"{_fmt(_median(runs, 'dlogz_s'), '.2f', 9)}"
                  f"{_fmt(_median(runs, 'dp_s'), '.3f', 8)}")
        print()

    notes = []
    for w in workloads:
        row = results.get((w.name, "pt"))
        if row and row["runs"]:
            notes.append(f"{w.name} pt: barrier Lambda {_median(row['runs'], 'barrier'):.2f}, "
                         f"suggested T {_median(row['runs'], 'suggested_t'):.0f} (ran "
                         f"{w.n_temperatures}), min swap acceptance "
                         f"{_median(row['runs'], 'swap_acc_min'):.2f}, HMC acceptance at "
                         f"beta = 1 {_median(row['runs'], 'accept'):.2f}")
        row = results.get((w.name, "ais"))
        if row and row["runs"]:
            notes.append(f"{w.name} ais: {_median(row['runs'], 'stages'):.0f} stages, weights' "
                         f"ESS {_median(row['runs'], 'weights_ess'):.0f} of {w.ais_particles}")
        row = results.get((w.name, "dynesty"))
        if row and row["runs"]:
            notes.append(f"{w.name} dynesty: {_median(row['runs'], 'ncall'):.0f} likelihood "
                         "calls")
        for name in CONTENDERS:
            row = results.get((w.name, name))
            if row:
                for m in sorted(row["warnings"]):
                    notes.append(f"{w.name} {name} warned: {m}")
                if "error" in row:
                    notes.append(f"{w.name} {name}: a run failed: {row['error']}")
    for name, reason in skipped:
        notes.append(f"{name} not run: {reason}")
    notes.append("hmc's ESS/s is within the mode each chain started in: it says nothing of the "
                 "mode weights, which |dP| shows")
    notes.append("ESS of ptemcee / reddemcee is over the 64 cold walkers of one ensemble "
                 "(not independent chains); AIS and dynesty give weighted points, no chains")
    notes.append("earlier measurement (someone else, 2 cores, MW32; not from this run): "
                 + "; ".join(f"{k} {t} s, |dlogZ| {e} (stated {se}), |dP| {p}"
                             for k, (t, e, se, p) in EARLIER.items())
                 + f"; plain HMC |dP| {EARLIER_HMC_P}")
    notes.append("load average (1, 5, 15 min) at start %.2f %.2f %.2f, at end %.2f %.2f %.2f "
                 "(anything well above 0 means other processes shared the cores)"
                 % (load_start + load_end))
    for n in notes:
        print("note:", n)


if __name__ == "__main__":
    main()
