"""What the benchmark scripts share: a contender's worker process, spoken to in JSON lines.

Each contender runs in its own child process so that imports and thread pools (torch,
JAX, Numba, CuPy) never meet and memory is measured per contender.  The child is the
benchmark script itself run with ``--worker NAME``: it prints one JSON line on start (its
"hello") and answers each JSON request line with one JSON line.
"""
import datetime
import json
import os
import platform
import subprocess


def machine_lines(threads):
    """Lines naming the date, the machine (CPU model, cores, memory, OS) and the threads."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return [f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"machine: {cpu}, {os.cpu_count()} logical CPUs "
            f"({len(os.sched_getaffinity(0))} usable), {mem_gb:.0f} GiB, "
            f"{platform.system()} {platform.release()}",
            f"python: {platform.python_version()}; threads per contender: {threads}"]


def thread_env(threads):
    """Environment pinning every threading runtime (Numba, OpenMP, BLAS, XLA) to
    ``threads`` threads, and JAX to the CPU."""
    env = dict(os.environ)
    t = str(threads)
    env.update(NUMBA_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t,
               OPENBLAS_NUM_THREADS=t, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={t}")
    return env


class Child:
    """A worker process for one contender.

    Parameters
    ----------
    script : str
        The benchmark script (``__file__``), run as ``python script --worker name ...``.
    name : str
        The contender.
    python : str
        The interpreter (peers may live in their own virtual environment).
    args : sequence of str
        More command-line arguments for the worker.
    env : dict, optional
        Its environment (default: this process's).
    """

    def __init__(self, script, name, python, args=(), env=None):
        self.name = name
        self.proc = subprocess.Popen(
            [python, os.path.abspath(script), "--worker", name, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "reason": f"worker exited (code {self.proc.wait()})"}
        return json.loads(line)

    def ask(self, **msg):
        """Send one request; return the worker's answer (a dict)."""
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"ok": False, "reason": "worker died"}
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.ask(op="quit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
