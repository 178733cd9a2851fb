"""Training-iteration time: npebm sampling + a torch MLP against TorchEBM's own CD.

Not a test: prints a markdown table of the median wall time of one training iteration of
an energy-based model by contrastive divergence, per contender, for CD-k and persistent
CD (PCD) at each k, and how npebm's time compares with TorchEBM's (the goal: at most
1.1x).  One iteration is: draw a batch, the CD call
(the k sampling steps and the loss), ``loss.backward()``, ``optimizer.step()``,
``optimizer.zero_grad()``.

The same problem for every contender:

- the MLP 2 -> 128 -> 128 -> 1 with SiLU (``--hidden``), float32 on the CPU, built after
  ``torch.manual_seed(0)`` (the same initial weights in every child: the script checks a
  hash of them), trained by Adam with lr 1e-3;
- the data: 100 000 points of ``npebm.datasets.make_eight_gaussians`` (seed 0;
  ``--dataset two_moons`` for the two moons), made once by the parent; each iteration
  draws ``--batch`` (256) rows with replacement from a torch generator seeded alike;
- the negatives: unadjusted Langevin with step size 0.01 and noise scale 1, k steps
  (``--k``, default 10 and 50).  TorchEBM's ``LangevinDynamics`` steps by its Euler-
  Maruyama integrator with diffusion D = noise_scale^2: x <- x - eta grad E(x) +
  sqrt(2 D) sqrt(eta) xi; npebm's ``LangevinDynamics(energy, step_size=0.01,
  noise_scale=1.0)`` steps by x <- x - eta grad E(x) + sigma sqrt(2 eta) xi, the same
  maths for sigma = 1 (their noise streams differ);
- the loss mean E(data) - mean E(negatives), ``energy_reg_weight=0`` on both (TorchEBM's
  default is 0.001);
- CD-k starts the chains at the batch; PCD draws them from a replay buffer of 10 000
  chains filled with N(0, I) noise, 5% of them refreshed per call (npebm:
  ``reinit_prob=0.05``, a fresh N(0, I) start; TorchEBM: ``new_sample_ratio=0.05``, which
  adds N(0, 0.01^2) noise instead; ``init_steps=0``, since npebm does not pre-run the
  buffer and TorchEBM's default 100 steps over all 10 000 chains are a one-off cost).

Contenders, each in its own child process (so that thread pools never meet):

- ``npebm``: ``TorchEnergy(mlp)``, ``LangevinDynamics(energy, step_size=0.01,
  noise_scale=1.0, dtype=np.float32)``, ``ContrastiveDivergence(energy, sampler,
  k_steps=k, persistent=..., seed=0)``; the batch is passed as a torch tensor.
- ``torchebm``: TorchEBM's ``ContrastiveDivergence`` (CD-k) or
  ``PersistentContrastiveDivergence`` with its ``LangevinDynamics``, on the same MLP
  wrapped in a ``torchebm.core.BaseModel`` whose ``forward(x)`` returns ``mlp(x)[:, 0]``.
- ``torch-loop``: a reference, not a library: the same CD written as a plain torch loop
  (``autograd.grad`` per step, ``torch.randn`` noise), what a network-bound iteration
  costs with no sampler machinery at all.

Timing: ``--warmup`` (20) untimed iterations first (they include Numba's compilation;
the table reports their total and the first iteration alone), then ``--iters`` (200)
timed iterations in ``--rounds`` (20) rounds: in round r every contender runs
iters/rounds iterations, in an order rotated by r, so drift of the machine hits all
alike.  "median ms/iter" is the median over all timed iterations and "ratio" the ratio
of these medians (the goal's measure); "paired" is the median over rounds of the ratio of
the round medians, which load that comes and goes disturbs less; "spread" is (largest -
smallest round median) / median; "CPU ms/iter" the median CPU time of the child (all its
threads) per iteration, which other processes on the machine disturb less than wall time
(with more than one thread it includes OpenMP's spin-waiting, so it is not the work).
With torch on more than one thread, other processes on the cores stall OpenMP's barriers
(an iteration can take 50x longer): compare runs only with a low load average (printed),
and a ``--threads 1`` run is the steadier check.

Breakdown: after the timed rounds each contender runs ``--breakdown-iters`` (50) more
iterations, timing the phases (batch, CD call, ``loss.backward()``, Adam: medians over the
iterations, so they need not add up to the iteration's median) and counting the
module's calls (with a wrapper that costs about a microsecond a call; autograd hooks or
marks would cost 40-70), and after each iteration times the module alone (4 forwards with
the input gradient, a sampling step's network work, and 2 forwards that record the graph,
the loss's), so both see the same load.  "net in CD" is the calls times the medians of
these costs, "other in CD" the rest of the CD call: the sampler, the replay buffer, the
loss and the library's code around the network.  "net share" is (net in CD +
``loss.backward()``) / iteration.

``--profile`` then runs cProfile over 50 iterations of the npebm child per row and
prints the top entries by own time and by cumulative time.

Threads: every child gets NUMBA_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and
OPENBLAS_NUM_THREADS = ``--threads`` (default: all usable cores) and
``torch.set_num_threads(--threads)``; ``--numba-threads`` sets the npebm worker's
NUMBA_NUM_THREADS apart (npebm draws its noise on Numba's threads).

Run (the TorchEBM peer lives in its own venv; a missing one is skipped with its reason)::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_training.py [--quick]
        [--peer-python /tmp/benchvenv/bin/python] [--threads 2] [--k 10,50]
        [--modes cd,pcd] [--contenders npebm,torchebm,torch-loop] [--profile]
        [--json results.json]
"""
import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from _harness import Child, machine_lines, thread_env  # benchmarks/ is sys.path[0]

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

CONTENDERS = ("torchebm", "npebm", "torch-loop")
PEERS = ("torchebm",)
GOAL = 1.1
N_DATA = 100_000


# ---------------------------------------------------------------------------------
# What every contender shares (built in the workers only: the parent never imports torch)

def make_mlp(torch, hidden):
    """The MLP 2 -> hidden -> hidden -> 1 with SiLU, float32, seeded by torch.manual_seed(0)."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                         nn.SiLU(), nn.Linear(hidden, 1)).to(torch.float32)


def weights_hash(module):
    h = hashlib.sha1()
    for p in module.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def counting(torch, net):
    """``net`` in a module that counts its calls: with an input that needs a gradient
    (the sampling gradients) and without (the loss's energies).  It adds about a
    microsecond a call, where autograd hooks or marks would add 40-70."""

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.grad_calls = self.plain_calls = 0

        def forward(self, x):
            if x.requires_grad:
                self.grad_calls += 1
            else:
                self.plain_calls += 1
            return self.net(x)

    return Counting()


class NetworkCost:
    """Times the module alone at ``x``: a forward with the input gradient (a sampling
    step's network work) and a forward that records the graph for the parameters (what
    the loss does).  Sampled between the iterations, so that both see the same load."""

    def __init__(self, torch, net, x):
        self.torch, self.net, self.x = torch, net, x
        self.grad, self.plain = [], []

    def sample(self, n_grad=4, n_plain=2):
        torch, net, x, clock = self.torch, self.net, self.x, time.perf_counter
        with torch.enable_grad():
            for _ in range(n_grad):
                t0 = clock()
                t = x.detach().requires_grad_(True)
                torch.autograd.grad(net(t)[:, 0].sum(), t)
                self.grad.append(clock() - t0)
            for _ in range(n_plain):
                t0 = clock()
                net(x)[:, 0].mean()
                self.plain.append(clock() - t0)

    def medians(self):
        return statistics.median(self.grad), statistics.median(self.plain)


class Contender:
    """The training loop; subclasses build the CD call ``cd_call(batch) -> loss``."""

    def __init__(self, threads, data_path):
        import torch
        torch.set_num_threads(threads)
        self.torch = torch
        self.data = torch.from_numpy(np.load(data_path))
        self.versions = {"torch": torch.__version__, "torch threads": torch.get_num_threads()}

    def prepare(self, row):
        torch = self.torch
        self.row = row
        self.mlp = make_mlp(torch, row["hidden"])
        self.hash = weights_hash(self.mlp)
        self.opt = torch.optim.Adam(self.mlp.parameters(), lr=row["lr"])
        self.gen_data = torch.Generator().manual_seed(1)
        self.build(row)

    def iteration(self, stamps=None):
        """One training iteration; the loss.  ``stamps`` (a list) collects the times
        after each phase: batch, CD call, backward, optimizer."""
        torch, clock = self.torch, time.perf_counter
        idx = torch.randint(0, self.data.shape[0], (self.row["batch"],),
                            generator=self.gen_data)
        batch = self.data[idx]
        if stamps is not None:
            stamps.append(clock())
        loss = self.cd_call(batch)
        if stamps is not None:
            stamps.append(clock())
        loss.backward()
        if stamps is not None:
            stamps.append(clock())
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if stamps is not None:
            stamps.append(clock())
        return loss

    def run(self, n):
        """``n`` iterations; their wall times and CPU times (this process, all threads)."""
        times, cpu = [], []
        clock, cpu_clock = time.perf_counter, time.process_time
        for _ in range(n):
            c0 = cpu_clock()
            t0 = clock()
            loss = self.iteration()
            times.append(clock() - t0)
            cpu.append(cpu_clock() - c0)
            self.last_loss = loss
        return times, cpu

    def breakdown(self, n):
        """Medians over ``n`` iterations with the module's calls counted, in seconds per
        iteration, and the network's part: the calls times their cost alone."""
        counted = counting(self.torch, self.mlp)
        cost = NetworkCost(self.torch, self.mlp, self.data[:self.row["batch"]].clone())
        cost.sample()  # warm
        cost.grad.clear()
        cost.plain.clear()
        self.instrument(counted)
        parts = {k: [] for k in ("total", "batch", "cd", "backward", "optimizer")}
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                st = []
                self.iteration(st)
                for key, v in zip(parts, (st[3] - t0, st[0] - t0, st[1] - st[0],
                                          st[2] - st[1], st[3] - st[2])):
                    parts[key].append(v)
                cost.sample()
        finally:
            self.instrument(self.mlp)
        out = {k: statistics.median(v) for k, v in parts.items()}
        out["grad_calls"] = counted.grad_calls / n
        out["plain_calls"] = counted.plain_calls / n
        out["grad_call_s"], out["plain_call_s"] = cost.medians()
        out["net_cd"] = (out["grad_calls"] * out["grad_call_s"]
                         + out["plain_calls"] * out["plain_call_s"])
        return out


class NpebmContender(Contender):
    def __init__(self, threads, data_path):
        super().__init__(threads, data_path)
        import numba

        import npebm
        self.versions.update({"npebm": npebm.__version__, "numba": numba.__version__,
                              "numpy": np.__version__})

    def build(self, row):
        from npebm.adapters.torch import TorchEnergy
        from npebm.losses import ContrastiveDivergence
        from npebm.samplers import LangevinDynamics
        self.energy = TorchEnergy(self.mlp)
        sampler = LangevinDynamics(self.energy, step_size=row["step_size"], noise_scale=1.0,
                                   dtype=np.float32)
        self.cd = ContrastiveDivergence(self.energy, sampler, k_steps=row["k"],
                                        persistent=row["mode"] == "pcd",
                                        buffer_size=row["buffer"], reinit_prob=0.05,
                                        energy_reg_weight=0.0, seed=0)

    def cd_call(self, batch):
        return self.cd(batch)[0]

    def instrument(self, module):
        self.energy.module = module


class TorchebmContender(Contender):
    def __init__(self, threads, data_path):
        super().__init__(threads, data_path)
        import torchebm
        self.versions["torchebm"] = getattr(torchebm, "__version__", "?")

    def build(self, row):
        torch = self.torch
        from torchebm.core import BaseModel
        from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
        from torchebm.samplers import LangevinDynamics

        class Net(BaseModel):
            def __init__(self, net):
                super().__init__(dtype=torch.float32, device="cpu")
                self.net = net

            def forward(self, x):
                return self.net(x)[:, 0]

        f32, cpu = torch.float32, torch.device("cpu")
        self.model = Net(self.mlp)
        sampler = LangevinDynamics(self.model, step_size=row["step_size"], noise_scale=1.0,
                                   dtype=f32, device=cpu)
        common = dict(k_steps=row["k"], energy_reg_weight=0.0, dtype=f32, device=cpu)
        if row["mode"] == "pcd":
            self.cd = PersistentContrastiveDivergence(
                self.model, sampler, buffer_size=row["buffer"], init_steps=0,
                new_sample_ratio=0.05, **common)
        else:
            self.cd = ContrastiveDivergence(self.model, sampler, **common)
        self.gen = torch.Generator().manual_seed(0)

    def cd_call(self, batch):
        return self.cd(batch, generator=self.gen)[0]

    def instrument(self, module):
        self.model.net = module


class TorchLoopContender(Contender):
    """CD written out in plain torch: the network-bound reference."""

    def build(self, row):
        torch = self.torch
        self.net = self.mlp
        self.gen = torch.Generator().manual_seed(0)
        self.eta = row["step_size"]
        self.amp = float(np.sqrt(2.0 * row["step_size"]))
        self.buffer = (torch.randn(row["buffer"], 2, generator=self.gen)
                       if row["mode"] == "pcd" else None)

    def cd_call(self, batch):
        torch = self.torch
        net, gen, n = self.net, self.gen, batch.shape[0]
        if self.buffer is None:
            x = batch.clone()
        else:
            idx = torch.randint(0, self.buffer.shape[0], (n,), generator=gen)
            x = self.buffer[idx]
            fresh = torch.rand(n, generator=gen) < 0.05
            x[fresh] = torch.randn(int(fresh.sum()), 2, generator=gen)
        for _ in range(self.row["k"]):
            x.requires_grad_(True)
            with torch.enable_grad():
                g, = torch.autograd.grad(net(x).sum(), x)
            with torch.no_grad():
                x = x - self.eta * g + self.amp * torch.randn(x.shape, generator=gen)
        if self.buffer is not None:
            self.buffer[idx] = x
        return net(batch).mean() - net(x).mean()

    def instrument(self, module):
        self.net = module


def make_contender(name, threads, data_path):
    cls = {"npebm": NpebmContender, "torchebm": TorchebmContender,
           "torch-loop": TorchLoopContender}[name]
    return cls(threads, data_path)


# ---------------------------------------------------------------------------------
# Worker process: a JSON-lines loop on stdin / a private copy of stdout

def profile_text(contender, n, top=25):
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        contender.iteration()
    prof.disable()
    out = []
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats(key).print_stats(top)
        text = buf.getvalue()
        # Keep the table: from the column header on.
        start = text.find("   ncalls")
        out.append(f"-- sorted by {key} ({n} iterations) --\n"
                   + (text[start:] if start >= 0 else text).rstrip())
    return "\n".join(out)


def worker_main(name, threads, data_path):
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol

    def reply(**kw):
        proto.write(json.dumps(kw) + "\n")

    try:
        contender = make_contender(name, threads, data_path)
    except Exception as exc:  # ImportError, or an API mismatch
        reply(ok=False, reason=f"{type(exc).__name__}: {exc}")
        return
    reply(ok=True, versions=contender.versions)
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg["op"]
        try:
            if op == "prepare":
                gc.collect()
                t0 = time.perf_counter()
                contender.prepare(msg["row"])
                contender.iteration()  # the first: Numba's compilation, buffer filling
                first = time.perf_counter() - t0
                contender.run(max(0, msg["warmup"] - 1))
                reply(ok=True, first_s=first, warm_s=time.perf_counter() - t0,
                      hash=contender.hash)
            elif op == "run":
                times, cpu = contender.run(msg["n"])
                reply(ok=True, times=times, cpu=cpu,
                      loss=float(contender.last_loss.detach()))
            elif op == "breakdown":
                reply(ok=True, parts=contender.breakdown(msg["n"]))
            elif op == "profile":
                reply(ok=True, text=profile_text(contender, msg["n"]))
            elif op == "quit":
                reply(ok=True)
                return
        except Exception as exc:
            reply(ok=False, reason=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------
# Parent: drives the workers in interleaved rounds, prints the tables

def make_data(name, path):
    from npebm import datasets
    make = {"eight_gaussians": datasets.make_eight_gaussians,
            "two_moons": datasets.make_two_moons}[name]
    np.save(path, make(N_DATA, seed=0).astype(np.float32))


def label(mode, k):
    return f"CD-{k}" if mode == "cd" else f"PCD (k={k})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 40 timed iterations in 8 rounds, 5 warm-up, 10 breakdown")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--modes", default="cd,pcd", help="cd (CD-k) and/or pcd (persistent)")
    ap.add_argument("--k", default="10,50", help="sampling steps per iteration")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--step-size", type=float, default=0.01)
    ap.add_argument("--buffer", type=int, default=10_000, help="PCD replay buffer size")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dataset", default="eight_gaussians",
                    choices=("eight_gaussians", "two_moons"))
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default 200)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 20)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 20)")
    ap.add_argument("--breakdown-iters", type=int, default=None,
                    help="instrumented iterations for the breakdown (default 50; 0: none)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile 50 iterations of the npebm child per row")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--numba-threads", type=int, default=None,
                    help="NUMBA_NUM_THREADS of the npebm worker (default: --threads)")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the npebm and torch-loop workers")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="interpreter for the torchebm worker")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads, args.data)

    iters = args.iters or (40 if args.quick else 200)
    warmup = args.warmup or (5 if args.quick else 20)
    rounds = max(1, min(args.rounds or (8 if args.quick else 20), iters))
    n_breakdown = (args.breakdown_iters if args.breakdown_iters is not None
                   else (10 if args.quick else 50))
    per_round = [iters // rounds + (r < iters % rounds) for r in range(rounds)]
    ks = [int(s) for s in args.k.split(",") if s.strip()]
    modes = [s.strip() for s in args.modes.split(",") if s.strip()]
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    rows_cfg = [dict(mode=m, k=k, batch=args.batch, hidden=args.hidden,
                     step_size=args.step_size, buffer=args.buffer, lr=args.lr)
                for m in modes for k in ks]

    head = machine_lines(args.threads)
    if args.numba_threads is not None:
        head.append(f"npebm worker: NUMBA_NUM_THREADS={args.numba_threads}")
    head.append(f"problem: MLP 2-{args.hidden}-{args.hidden}-1 SiLU float32, Adam lr "
                f"{args.lr}, {args.dataset} ({N_DATA} points), batch {args.batch}, Langevin "
                f"step {args.step_size} noise 1, PCD buffer {args.buffer}")
    head.append(f"timing: median of {iters} iterations in {rounds} interleaved rounds after "
                f"{warmup} warm-up iterations" + (" (--quick)" if args.quick else ""))
    for line in head:
        print(line)

    load_start = os.getloadavg()
    tmpdir = tempfile.mkdtemp(prefix="bench_training_")
    data_path = os.path.join(tmpdir, "data.npy")
    make_data(args.dataset, data_path)
    children, versions, notes = {}, {}, []
    for name in names:
        env = thread_env(args.threads)
        if name == "npebm" and args.numba_threads is not None:
            env["NUMBA_NUM_THREADS"] = str(args.numba_threads)
        child = Child(__file__, name, args.peer_python if name in PEERS else args.python,
                      ["--threads", str(args.threads), "--data", data_path], env)
        if child.hello.get("ok"):
            children[name] = child
            versions[name] = child.hello["versions"]
            vs = ", ".join(f"{k} {v}" for k, v in child.hello["versions"].items())
            print(f"  {name}: {vs}")
            head.append(f"{name}: {vs}")
        else:
            print(f"  {name}: unavailable: {child.hello.get('reason')}")
            notes.append(f"{name} not run: {child.hello.get('reason')}")
            child.close()
    sys.stdout.flush()

    results, profiles = [], {}
    try:
        for cfg in rows_cfg:
            print(f"\n{label(cfg['mode'], cfg['k'])}", flush=True)
            active, res = [], {}
            for name, child in children.items():
                r = child.ask(op="prepare", row=cfg, warmup=warmup)
                if r.get("ok"):
                    active.append(name)
                    res[name] = dict(contender=name, mode=cfg["mode"], k=cfg["k"], times=[], cpu=[],
                                     round_medians=[], first_s=r["first_s"],
                                     warm_s=r["warm_s"], hash=r["hash"])
                    print(f"  {name}: warm-up {r['warm_s']:.2f} s (first iteration "
                          f"{r['first_s']:.2f} s)", flush=True)
                else:
                    print(f"  {name}: skipped: {r.get('reason')}", flush=True)
                    notes.append(f"{label(cfg['mode'], cfg['k'])} {name}: {r.get('reason')}")
            for rnd in range(rounds):
                j = rnd % max(1, len(active))
                for name in active[j:] + active[:j]:
                    r = children[name].ask(op="run", n=per_round[rnd])
                    if r.get("ok"):
                        res[name]["times"] += r["times"]
                        res[name]["cpu"] += r["cpu"]
                        res[name]["round_medians"].append(statistics.median(r["times"]))
                        res[name]["loss"] = r["loss"]
                    else:
                        res[name]["error"] = r.get("reason")
                    time.sleep(0.05)  # let the previous child's spinning threads go idle
            for name in active:
                row = res[name]
                if n_breakdown > 0:
                    r = children[name].ask(op="breakdown", n=n_breakdown)
                    if r.get("ok"):
                        row["breakdown"] = r["parts"]
                    time.sleep(0.05)
                if args.profile and name == "npebm":
                    r = children[name].ask(op="profile", n=50)
                    if r.get("ok"):
                        profiles[label(cfg["mode"], cfg["k"])] = r["text"]
                if row["times"]:
                    med = statistics.median(row["times"])
                    row["median_s"] = med
                    row["cpu_s"] = statistics.median(row["cpu"])
                    row["spread"] = (max(row["round_medians"]) - min(row["round_medians"])) / med
                    print(f"  {name}: median {med * 1e3:.2f} ms/iter, spread "
                          f"{100 * row['spread']:.0f}%", flush=True)
                results.append(row)
    finally:
        for child in children.values():
            child.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
    load_end = os.getloadavg()

    def ref(row):
        for other in results:
            if (other["contender"] == "torchebm" and other["mode"] == row["mode"]
                    and other["k"] == row["k"] and "median_s" in other):
                return other
        return None

    print("\n| contender | mode | k | median ms/iter | spread | ratio / TorchEBM | paired "
          "| CPU ms/iter | CPU ratio | warm-up s | first iter s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        if "median_s" not in row:
            continue
        r = ref(row)
        row["ratio"] = row["median_s"] / r["median_s"] if r else None
        row["cpu_ratio"] = row["cpu_s"] / r["cpu_s"] if r else None
        pairs = list(zip(row["round_medians"], r["round_medians"])) if r else []
        row["paired_ratio"] = statistics.median(a / b for a, b in pairs) if pairs else None
        ratio, paired, cpu_ratio = (f"{row[key]:.3f}" if r else "-"
                                    for key in ("ratio", "paired_ratio", "cpu_ratio"))
        print(f"| {row['contender']} | {row['mode'].upper()} | {row['k']} | "
              f"{row['median_s'] * 1e3:.2f} | {100 * row['spread']:.1f}% | {ratio} | {paired} | "
              f"{row['cpu_s'] * 1e3:.2f} | {cpu_ratio} | {row['warm_s']:.2f} | "
              f"{row['first_s']:.2f} |")

    print(f"\ngoal: npebm <= {GOAL}x TorchEBM per iteration")
    goals = []
    for row in results:
        if row["contender"] == "npebm" and row.get("ratio") is not None:
            ok = row["ratio"] <= GOAL
            goals.append(dict(mode=row["mode"], k=row["k"], ratio=row["ratio"], passed=ok,
                              paired_ratio=row["paired_ratio"], cpu_ratio=row["cpu_ratio"]))
            print(f"  {label(row['mode'], row['k'])}: {row['ratio']:.3f}x "
                  f"{'PASS' if ok else 'FAIL'} (paired {row['paired_ratio']:.3f}x, CPU time "
                  f"{row['cpu_ratio']:.3f}x)")

    if any("breakdown" in row for row in results):
        print(f"\nbreakdown: medians over {n_breakdown} iterations, ms/iter; calls = the module's "
              "calls per iteration with an input gradient + without; net in CD = those calls "
              "times their cost alone (timed between the iterations); other = CD call - net, "
              "also per sampling step")
        print("\n| contender | mode | k | iter | batch | CD call | calls | net in CD | other in CD "
              "| other us/step | loss.backward | Adam | net share |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in results:
            b = row.get("breakdown")
            if not b:
                continue
            other = b["cd"] - b["net_cd"]
            b["net_share"] = (b["net_cd"] + b["backward"]) / b["total"]
            print(f"| {row['contender']} | {row['mode'].upper()} | {row['k']} | "
                  f"{b['total'] * 1e3:.2f} | {b['batch'] * 1e3:.3f} | {b['cd'] * 1e3:.2f} | "
                  f"{b['grad_calls']:.0f}+{b['plain_calls']:.0f} | {b['net_cd'] * 1e3:.2f} | "
                  f"{other * 1e3:.2f} | {other / row['k'] * 1e6:.0f} | "
                  f"{b['backward'] * 1e3:.2f} | {b['optimizer'] * 1e3:.2f} | "
                  f"{100 * b['net_share']:.0f}% |")
        costs = [f"{row['contender']} {row['breakdown']['grad_call_s'] * 1e6:.0f} / "
                 f"{row['breakdown']['plain_call_s'] * 1e6:.0f}"
                 for row in results if "breakdown" in row and row["k"] == ks[0]
                 and row["mode"] == modes[0]]
        print(f"\nmodule alone, us per call with input gradient / forward only "
              f"({label(modes[0], ks[0])} children): " + "; ".join(costs))

    hashes = {row["hash"] for row in results}
    if len(hashes) > 1:
        notes.append(f"initial weights differ between children: hashes {sorted(hashes)}")
    elif hashes:
        notes.append(f"initial weights identical in every child (hash {hashes.pop()})")
    for row in results:
        if "error" in row:
            notes.append(f"{label(row['mode'], row['k'])} {row['contender']}: a run failed: "
                         f"{row['error']}")
        if "loss" in row and not np.isfinite(row["loss"]):
            notes.append(f"{label(row['mode'], row['k'])} {row['contender']}: loss not finite")
    extra = sorted({(row["k"], b["grad_calls"]) for row in results
                    if row["contender"] == "npebm" and (b := row.get("breakdown"))
                    and b["grad_calls"] > row["k"]})
    extra = [f"{calls:.0f} times for k = {k}" for k, calls in extra]
    if extra:
        notes.append(f"npebm's sampler calls the network with a gradient {', '.join(extra)}: "
                     "it evaluates the start state too, then each new state (refused if not "
                     "finite); TorchEBM evaluates once per step")
    notes.append("load average (1, 5, 15 min) at start %.2f %.2f %.2f, at end %.2f %.2f %.2f "
                 "(anything well above 0 means other processes shared the cores)"
                 % (load_start + load_end))
    print()
    for n in notes:
        print("note:", n)
    for name, text in profiles.items():
        print(f"\nprofile: npebm, {name}\n{text}")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(header=head, args=vars(args), versions=versions, rows=results,
                           goals=goals, notes=notes, profiles=profiles), fh, indent=1)


if __name__ == "__main__":
    main()
