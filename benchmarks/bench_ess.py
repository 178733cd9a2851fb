"""Effective samples per second: npebm's adaptive HMC against BlackJAX's window adaptation.

Not a test: prints, per target and contender, the wall time of adaptation + sampling, the
smallest bulk, tail and sd ESS over coordinates of the kept draws, their minimum ("min
ESS"), min-ESS per second, and npebm's ratio over BlackJAX (goal: npebm >= 2x BlackJAX's
min-ESS/s).  Bulk ESS alone flatters fixed-length HMC: a trajectory of about half a period
makes draws antithetic (bulk ESS far above the number of draws) while x^2 hardly moves
(sd ESS tiny), so the minimum over the three is the fair measure.

Targets (float64):

- ``gauss100``: the 100-d dense Gaussian of bench_samplers.py's W4: mean 0, cov = A A^T /
  100 + I with A ~ N(0, 1) from ``default_rng(1)``; npebm uses ``GaussianEnergy``.
- ``linreg16``: the posterior of a Bayesian linear regression with 16 correlated features
  (pairwise correlation 0.9) of scales spanning 1e-2 .. 1e2, 200 observations, sigma^2 =
  1, prior N(0, tau^2 I) with tau^2 = 100: E(b) = 1/2 b^T H b - c^T b, H = X^T X /
  sigma^2 + I / tau^2, c = X^T y / sigma^2 (badly scaled and correlated); npebm uses a
  ``CompiledEnergy`` with loops over the precomputed H and c.

Contenders, the same sizes for all: C chains, B burn-in (adaptation) proposals, N kept
proposals, L leapfrog steps each, so every chain evaluates (B + N) L gradients:

- ``npebm-diag`` / ``npebm-dense``: ``HamiltonianMonteCarlo(...).sample(x=x0, n_steps=N,
  burn_in=B, adapt="diag" | "dense", return_trajectory=True)``; the mass matrix is
  estimated from the draws of all chains pooled, in Stan's windows.
- ``blackjax-diag`` / ``blackjax-dense``: ``blackjax.window_adaptation(blackjax.hmc, ...,
  num_integration_steps=L, is_mass_matrix_diagonal=True | False)`` run for B steps per
  chain, then ``blackjax.hmc`` with the tuned parameters for N steps, all in one
  ``jax.jit`` (``jax_enable_x64``).  Each chain adapts its own step size and mass matrix
  from its own draws, as window_adaptation does.  Sampling is a ``jax.vmap`` over chains,
  and so is adaptation (``--blackjax-adapt map`` runs it as a ``jax.lax.map``, one chain
  after another, instead: under ``vmap`` a ``lax.cond`` becomes a ``select`` that runs
  both branches).

Every contender starts from the same x0 (standard normal draws).  Each contender lives in
its own child process (so Numba's and XLA's thread pools never meet); a child first does
one untimed run (compilation), then timed runs.  Timed runs go in interleaved rounds, the
order rotated each round.  A run is timed from the call to the returned NumPy array
(``block_until_ready`` for JAX); seeds differ between runs.  ESS comes from
``npebm.diagnostics.ess`` (checked against ArviZ) on the (chains, N, dim) kept draws, the
same estimator for every contender; min-ESS/s uses each run's own ESS and time, and the
table shows medians over runs.  Step size and acceptance: for BlackJAX the median over
chains of the tuned step size (each chain has its own) and the mean acceptance probability
over kept proposals; for npebm the tuned step and the mean acceptance rate.  While
sampling, both libraries jitter each proposal's step by the same ``--jitter`` fraction
(uniform, per chain and proposal; BlackJAX through its HMC kernel's step argument).

Threads: every child gets NUMBA_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS,
OPENBLAS_NUM_THREADS = ``--threads`` (default 2) and XLA's intra-op flag, and is pinned to
the first ``--threads`` usable cores with ``os.sched_setaffinity``.

Run (the children need npebm, and jax + blackjax for the BlackJAX contenders, which are
skipped with the reason when they cannot be imported; the default child interpreter is
/tmp/benchvenv/bin/python when it exists)::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_ess.py [--quick]
        [--targets gauss100,linreg16] [--contenders npebm-diag,blackjax-diag]
        [--chains 64] [--burn-in 1000] [--draws 1000] [--leapfrog 10] [--repeats 3]
        [--threads 2] [--blackjax-adapt vmap|map] [--python /tmp/benchvenv/bin/python]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from _harness import Child, machine_lines, thread_env  # benchmarks/ is sys.path[0]

CONTENDERS = ("npebm-diag", "npebm-dense", "blackjax-diag", "blackjax-dense")
TARGETS = ("gauss100", "linreg16")
BENCHVENV = "/tmp/benchvenv/bin/python"


# ---------------------------------------------------------------------------------
# Targets: (quadratic energy) E(x) = 1/2 x^T H x - c^T x

def target_arrays(target):
    """(H, c, true covariance) of the target, float64."""
    if target == "gauss100":
        a = np.random.default_rng(1).normal(size=(100, 100))
        cov = a @ a.T / 100 + np.eye(100)
        return np.linalg.inv(cov), np.zeros(100), cov
    if target == "linreg16":
        rng = np.random.default_rng(2)
        n, d, rho = 200, 16, 0.9
        z = np.sqrt(1 - rho) * rng.normal(size=(n, d)) + np.sqrt(rho) * rng.normal(size=(n, 1))
        x = z * np.logspace(-2, 2, d)
        beta = rng.normal(size=d)
        y = x @ beta + rng.normal(size=n)
        sigma2, tau2 = 1.0, 100.0
        h = x.T @ x / sigma2 + np.eye(d) / tau2
        c = x.T @ y / sigma2
        return h, c, np.linalg.inv(h)
    raise ValueError(target)


def _quadratic_energy(x, grad, params):
    h, c = params
    d = x.shape[0]
    e = 0.0
    for i in range(d):
        g = -c[i]
        for j in range(d):
            g += h[i, j] * x[j]
        grad[i] = g
        e += 0.5 * x[i] * (g - c[i])  # with g = Hx - c: 1/2 x.Hx - c.x = 1/2 x.(g - c)
    return e


def initial_state(dim, chains, seed):
    return np.random.default_rng(1000 + seed).normal(size=(chains, dim))


# ---------------------------------------------------------------------------------
# Workers

class NpebmRunner:
    def __init__(self, adapt):
        import numba

        import npebm
        self.adapt = adapt
        self.versions = {"npebm": getattr(npebm, "__version__", "?"),
                         "numba": numba.__version__, "numpy": np.__version__,
                         "numba threads": numba.config.NUMBA_NUM_THREADS}

    def prepare(self, target, cfg):
        from npebm.energies import CompiledEnergy, GaussianEnergy
        h, c, cov = target_arrays(target)
        if target == "gauss100":
            self.energy = GaussianEnergy(np.zeros(h.shape[0]), cov)
        else:
            self.energy = CompiledEnergy(_quadratic_energy, params=(h, c), dim=h.shape[0])
        self.dim, self.cfg = h.shape[0], cfg

    def run(self, seed):
        from npebm.samplers import HamiltonianMonteCarlo
        cfg = self.cfg
        x0 = initial_state(self.dim, cfg["chains"], seed)
        t0 = time.perf_counter()
        hmc = HamiltonianMonteCarlo(self.energy, step_size=0.1,
                                    n_leapfrog_steps=cfg["leapfrog"], jitter=cfg["jitter"],
                                    seed=seed)
        traj, diag = hmc.sample(x=x0, n_steps=cfg["draws"], burn_in=cfg["burn_in"],
                                adapt=self.adapt, return_trajectory=True,
                                return_diagnostics=True)
        seconds = time.perf_counter() - t0
        return (np.asarray(traj, np.float64), seconds, float(hmc.step_size),
                float(diag.summary()["acceptance_rate"]))


class BlackjaxRunner:
    def __init__(self, diagonal, batch):
        import jax
        jax.config.update("jax_enable_x64", True)
        import blackjax
        self.jax, self.blackjax, self.diagonal, self.batch = jax, blackjax, diagonal, batch
        self.versions = {"jax": jax.__version__, "jaxlib": jax.lib.__version__,
                         "blackjax": blackjax.__version__, "numpy": np.__version__,
                         "devices": ",".join(str(d) for d in jax.devices())}

    def prepare(self, target, cfg):
        jax, blackjax = self.jax, self.blackjax
        import jax.numpy as jnp
        from blackjax.adaptation.base import get_filter_adapt_info_fn
        h, c, _ = target_arrays(target)
        h, c = jnp.asarray(h), jnp.asarray(c)
        self.dim, self.cfg = h.shape[0], cfg
        burn_in, draws, leapfrog = cfg["burn_in"], cfg["draws"], cfg["leapfrog"]

        def logdensity(x):
            return c @ x - 0.5 * x @ (h @ x)

        warmup = blackjax.window_adaptation(
            blackjax.hmc, logdensity, is_mass_matrix_diagonal=self.diagonal,
            num_integration_steps=leapfrog,
            adaptation_info_fn=get_filter_adapt_info_fn())  # keep no per-step history

        def adapt_one(key, x0):
            (state, params), _ = warmup.run(key, x0, num_steps=burn_in)
            return state, params["step_size"], params["inverse_mass_matrix"]

        hmc_kernel = blackjax.mcmc.hmc.build_kernel()
        jitter = cfg["jitter"]

        def draw_one(key, state, step, inv_mass):
            def body(st, k):
                k_step, k_jit = jax.random.split(k)
                # the same per-proposal step jitter as npebm's
                eps = step * (1 + jitter * (2 * jax.random.uniform(k_jit) - 1))
                st, info = hmc_kernel(k_step, st, logdensity, eps, inv_mass, leapfrog)
                return st, (st.position, info.acceptance_rate)

            _, (pos, acc) = jax.lax.scan(body, state, jax.random.split(key, draws))
            return pos, acc

        def run_all(keys, x0):
            k_warm, k_draw = keys[:, 0], keys[:, 1]
            if self.batch == "vmap":
                state, step, inv_mass = jax.vmap(adapt_one)(k_warm, x0)
            else:
                state, step, inv_mass = jax.lax.map(lambda a: adapt_one(*a), (k_warm, x0))
            pos, acc = jax.vmap(draw_one)(k_draw, state, step, inv_mass)
            return pos, acc, step

        self.fn = jax.jit(run_all)

    def run(self, seed):
        jax = self.jax
        x0 = jax.numpy.asarray(initial_state(self.dim, self.cfg["chains"], seed))
        keys = jax.random.split(jax.random.key(seed), (self.cfg["chains"], 2))
        t0 = time.perf_counter()
        pos, acc, step = jax.block_until_ready(self.fn(keys, x0))
        seconds = time.perf_counter() - t0
        return (np.asarray(pos, np.float64), seconds, float(np.median(np.asarray(step))),
                float(np.mean(np.asarray(acc))))


def make_runner(name, batch):
    lib, kind = name.split("-")
    if lib == "npebm":
        return NpebmRunner(kind)
    return BlackjaxRunner(kind == "diag", batch)


def worker_main(name, threads, batch):
    try:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    except (AttributeError, OSError):
        pass

    def reply(**kw):
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    try:
        runner = make_runner(name, batch)
    except Exception as exc:  # missing package: skipped with the reason
        reply(ok=False, reason=f"{type(exc).__name__}: {exc}")
        return
    reply(ok=True, versions=runner.versions)
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["op"] == "quit":
                return
            if msg["op"] == "prepare":
                runner.prepare(msg["target"], msg["cfg"])
                t0 = time.perf_counter()
                runner.run(seed=0)  # compilation
                reply(ok=True, warm_s=time.perf_counter() - t0)
            elif msg["op"] == "run":
                draws, seconds, step, acc = runner.run(msg["seed"])
                np.save(msg["save"], draws)
                reply(ok=True, seconds=seconds, step=step, accept=acc,
                      finite=bool(np.all(np.isfinite(draws))))
        except Exception as exc:
            reply(ok=False, reason=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------
# Parent

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 16 chains, 300 burn-in, 300 draws, 1 timed run")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--chains", type=int, default=None, help="default 64 (quick 16)")
    ap.add_argument("--burn-in", type=int, default=None, help="default 1000 (quick 300)")
    ap.add_argument("--draws", type=int, default=None, help="default 1000 (quick 300)")
    ap.add_argument("--leapfrog", type=int, default=10)
    ap.add_argument("--jitter", type=float, default=0.2,
                    help="per-proposal step jitter while sampling, both libraries (0.2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default 3, quick 1)")
    ap.add_argument("--threads", type=int, default=min(2, len(os.sched_getaffinity(0))))
    ap.add_argument("--python", default=BENCHVENV if os.path.exists(BENCHVENV) else sys.executable,
                    help="interpreter of the children (needs npebm; jax, blackjax for BlackJAX)")
    ap.add_argument("--blackjax-adapt", choices=("map", "vmap"), default="vmap",
                    help="BlackJAX adaptation over chains: vmap (default) or lax.map")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads, args.blackjax_adapt)

    from npebm.diagnostics import ess

    q = args.quick
    cfg = dict(chains=args.chains or (16 if q else 64),
               burn_in=args.burn_in or (300 if q else 1000),
               draws=args.draws or (300 if q else 1000), leapfrog=args.leapfrog,
               jitter=args.jitter)
    repeats = args.repeats or (1 if q else 3)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for line in machine_lines(args.threads):
        print(line)
    print(f"sizes: {cfg['chains']} chains, burn-in B = {cfg['burn_in']}, kept N = "
          f"{cfg['draws']} proposals, L = {cfg['leapfrog']} leapfrog steps: "
          f"{(cfg['burn_in'] + cfg['draws']) * cfg['leapfrog']} gradients per chain; "
          f"step jitter {cfg['jitter']}; "
          f"{repeats} timed run(s) after one warm-up run, interleaved"
          + (" (--quick)" if q else ""))

    load_start = os.getloadavg()
    tmpdir = tempfile.mkdtemp(prefix="bench_ess_")
    children, notes = {}, []
    for name in names:
        child = Child(__file__, name, args.python,
                      ["--threads", str(args.threads), "--blackjax-adapt", args.blackjax_adapt],
                      thread_env(args.threads))
        if child.hello.get("ok"):
            children[name] = child
            print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in child.hello["versions"].items()))
        else:
            print(f"  {name}: unavailable: {child.hello.get('reason')}")
            notes.append(f"{name} not run: {child.hello.get('reason')}")
            child.close()
    sys.stdout.flush()

    rows = {}
    for target in targets:
        print(f"\n{target}", flush=True)
        active = []
        for name, child in children.items():
            r = child.ask(op="prepare", target=target, cfg=cfg)
            if r.get("ok"):
                active.append(name)
                rows[target, name] = dict(runs=[], warm_s=r["warm_s"])
                print(f"  {name}: warm-up (compilation + one run) {r['warm_s']:.1f} s", flush=True)
            else:
                print(f"  {name}: skipped: {r.get('reason')}", flush=True)
                notes.append(f"{target} {name}: {r.get('reason')}")
        for rnd in range(repeats):
            k = rnd % max(1, len(active))
            for name in active[k:] + active[:k]:
                path = os.path.join(tmpdir, f"{target}_{name}.npy")
                r = children[name].ask(op="run", seed=1 + rnd, save=path)
                if not r.get("ok"):
                    notes.append(f"{target} {name}: a run failed: {r.get('reason')}")
                    continue
                draws = np.load(path)
                os.remove(path)
                for method in ("bulk", "tail", "sd"):
                    r[method] = float(np.min(ess(draws, method=method)))
                min_ess = r["min_ess"] = min(r["bulk"], r["tail"], r["sd"])
                r["rate"] = min_ess / r["seconds"]
                rows[target, name]["runs"].append(r)
                print(f"  {name}: {r['seconds']:.2f} s, min ESS bulk {r['bulk']:.0f} tail "
                      f"{r['tail']:.0f} sd {r['sd']:.0f}, {r['rate']:.0f} ESS/s, "
                      f"step {r['step']:.3g}, accept {r['accept']:.2f}"
                      + ("" if r["finite"] else " (non-finite draws!)"), flush=True)
                time.sleep(0.2)  # let the previous child's spinning threads go idle
    for child in children.values():
        child.close()
    load_end = os.getloadavg()
    os.rmdir(tmpdir)

    print("\nmedians over the timed runs; time = adaptation + sampling; npebm x = npebm's "
          "min-ESS/s over BlackJAX's with the same mass-matrix kind (goal >= 2)")
    hdr = (f"{'target':<10}{'contender':<16}{'time s':>8}{'bulk':>8}{'tail':>8}{'sd':>8}"
           f"{'min ESS':>9}{'ESS/s':>9}"
           f"{'npebm x':>9}{'step':>10}{'accept':>8}{'warm-up s':>11}")
    print(hdr)
    print("-" * len(hdr))
    med = {}
    for key, row in rows.items():
        if row["runs"]:
            med[key] = {f: statistics.median(r[f] for r in row["runs"])
                        for f in ("seconds", "bulk", "tail", "sd", "min_ess", "rate", "step",
                                  "accept")}
    for target in targets:
        for name in CONTENDERS:
            if (target, name) not in med:
                continue
            m = med[target, name]
            ratio = ""
            if name.startswith("npebm"):
                peer = med.get((target, name.replace("npebm", "blackjax")))
                ratio = f"{m['rate'] / peer['rate']:.2f}x" if peer else "-"
            print(f"{target:<10}{name:<16}{m['seconds']:>8.2f}{m['bulk']:>8.0f}{m['tail']:>8.0f}"
                  f"{m['sd']:>8.0f}{m['min_ess']:>9.0f}"
                  f"{m['rate']:>9.0f}{ratio:>9}{m['step']:>10.3g}{m['accept']:>8.2f}"
                  f"{rows[target, name]['warm_s']:>11.1f}")
        print()
    notes.append("load average (1, 5, 15 min) at start %.2f %.2f %.2f, at end %.2f %.2f %.2f"
                 % (load_start + load_end))
    notes.append("BlackJAX adapts each chain on its own (step size and mass matrix from that "
                 "chain's draws; 'step' is the median over chains); npebm pools all chains' "
                 "draws into one step size and mass matrix")
    for n in notes:
        print("note:", n)


if __name__ == "__main__":
    main()
