"""Per-chain Philox streams: known answers, stream layout, invariance, statistics.

Statistical tolerances are derived, not tuned: each bound is 5 standard errors of the
statistic under the null (two-sided tail ~6e-7 for a normal statistic), and every
test uses a fixed seed, so a pass is reproducible and a failure means a real defect.
"""
import hashlib
import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npebm
from npebm.random import INIT, NOISE, ChainStreams, key_from_seed

numba = pytest.importorskip("numba")
from npebm import _philox as P  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M32 = 0xFFFFFFFF
U64 = np.uint64


# --------------------------------------------------------------------------------
# Reference Philox4x32-10 in plain Python ints (Salmon et al. 2011).

def philox_ref(ctr, key):
    c = list(ctr)
    k = list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & M32, (k[1] + 0xBB67AE85) & M32]
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & M32, (p0 >> 32) ^ c[3] ^ k[1], p0 & M32]
    return c


def stream_word_ref(key, chain, sid, p):
    blk = p >> 2
    return philox_ref([blk & M32, blk >> 32, chain, sid], key)[p & 3]


@numba.njit
def _philox_many(ctr, key):
    out = np.empty_like(ctr)
    for i in range(ctr.shape[0]):
        r = P.philox4x32(ctr[i, 0], ctr[i, 1], ctr[i, 2], ctr[i, 3], key[i, 0], key[i, 1])
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = r
    return out


@numba.njit
def _words(k0, k1, chain, sid, pos, n):
    buf = np.zeros(4, np.uint32)
    P.sync(k0, k1, chain, sid, pos, buf)
    out = np.empty(n, np.uint32)
    for j in range(n):
        w, pos = P.next_u32(k0, k1, chain, sid, pos, buf)
        out[j] = w
    return out, pos


@numba.njit
def _one_at_a_time(k0, k1, chain_offset, sid, pos, out, resync_every):
    """Draw with the per-draw generic API, clobbering and re-syncing buf periodically,
    which is what resuming from a checkpoint does."""
    buf = np.zeros(4, np.uint32)
    for i in range(out.shape[0]):
        chain = U64(chain_offset + i)
        p = U64(pos[i])
        P.sync(k0, k1, chain, sid, p, buf)
        for j in range(out.shape[1]):
            if j > 0 and j % resync_every == 0:
                buf[:] = 0xDEADBEEF
                P.sync(k0, k1, chain, sid, p, buf)
            x, p = P.normal(k0, k1, chain, sid, p, buf, out)
            out[i, j] = x
        pos[i] = p


@numba.njit
def _tail_draws32(k0, k1, n):
    """n draws from the float32 ziggurat's tail branch alone (layer 0 beyond R)."""
    buf = np.zeros(4, np.uint32)
    out = np.empty(n, np.float32)
    pos = U64(0)
    for j in range(n):
        ok, out[j], pos = P._normal32_slow(k0, k1, U64(0), 0, pos, buf, 0, j, np.float32(0))
    return out


@numba.njit
def _tail_draws64(k0, k1, n):
    buf = np.zeros(4, np.uint32)
    out = np.empty(n, np.float64)
    pos = U64(0)
    for j in range(n):
        ok, out[j], pos = P._normal64_slow(k0, k1, U64(0), 0, pos, buf, 0, j, 0.0)
    return out


KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32,) * 4, (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


# --------------------------------------------------------------------------------
# Philox itself

@pytest.mark.parametrize("ctr, key, expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    got = _philox_many(np.array([ctr], np.uint32), np.array([key], np.uint32))[0]
    assert [int(v) for v in got] == list(expected)
    assert philox_ref(ctr, key) == list(expected)
    # register_jitable keeps a working Python function: handy when debugging kernels.
    assert [int(v) for v in P.philox4x32(*ctr, *key)] == list(expected)


@given(st.lists(st.tuples(*[st.integers(0, M32)] * 6), min_size=1, max_size=20))
def test_philox_matches_reference(cases):
    arr = np.array(cases, np.uint32)
    got = _philox_many(arr[:, :4].copy(), arr[:, 4:].copy())
    for row, (c0, c1, c2, c3, k0, k1) in zip(got, cases):
        assert [int(v) for v in row] == philox_ref([c0, c1, c2, c3], [k0, k1])


@given(pos=st.one_of(st.integers(0, 64), st.integers(4 * M32 - 6, 4 * M32 + 6),
                     st.integers(0, 2 ** 40)),
       chain=st.integers(0, M32), sid=st.sampled_from([NOISE, INIT]))
def test_stream_layout(pos, chain, sid):
    # word p is lane p & 3 of block p >> 2, whose 64-bit index spans counter words 0-1
    # (the second range crosses the carry into word 1); pos need not be aligned.
    key = (0x12345678, 0x9ABCDEF0)
    words, end = _words(np.uint32(key[0]), np.uint32(key[1]), U64(chain), sid, U64(pos), 9)
    assert int(end) == pos + 9
    assert [int(w) for w in words] == [stream_word_ref(key, chain, sid, p)
                                       for p in range(pos, pos + 9)]


# --------------------------------------------------------------------------------
# Ziggurat tables against NumPy's numpy/random/src/distributions/ziggurat_constants.h

def test_ziggurat_tables_match_numpy():
    ki_float = {0: 0x007799EC, 1: 0, 2: 0x006045F5, 3: 0x006D1AA8, 4: 0x00728FB4,
                5: 0x007592AF, 250: 0x007DB036, 252: 0x007CF4B9, 254: 0x007B3630,
                255: 0x0078D2D2}
    wi_float = {0: 4.66198677960027669255e-07, 1: 2.56588335019207033255e-08,
                2: 3.41146697750176784592e-08, 255: 4.35608969373823260746e-07}
    fi_float = {0: 1.0, 1: 9.77101701267671596263e-01, 254: 2.60907274610215926189e-03,
                255: 1.26028593049859797236e-03}
    for i, v in ki_float.items():
        assert P._KI32[i] == v, i
    for i, v in wi_float.items():
        assert P._WI32[i] == np.float32(v), i
    for i, v in fi_float.items():
        assert P._FI32[i] == np.float32(v), i
    # NumPy's double tables came from a double-precision recursion whose rounding we
    # cannot replay bit for bit; agreement to 1e-12 is ~1e3 ulp, far below anything a
    # sample could detect.
    ki_double = {0: 0x000EF33D8025EF6A, 2: 0x000C08BE98FBC6A8, 3: 0x000DA354FABD8142,
                 254: 0x000F66C5F7F0302C, 255: 0x000F1A5A4B331C4A}
    wi_double = {0: 8.68362706080130616677e-16, 1: 4.77933017572773682428e-17,
                 255: 8.11384933765648418565e-16}
    fi_double = {1: 9.77101701267671596263e-01, 255: 1.26028593049859797236e-03}
    assert P._KI64[1] == 0 and P._FI64[0] == 1.0
    for i, v in ki_double.items():
        assert abs(int(P._KI64[i]) - v) <= 1e-12 * v, i
    for i, v in wi_double.items():
        assert P._WI64[i] == pytest.approx(v, rel=1e-12), i
    for i, v in fi_double.items():
        assert P._FI64[i] == pytest.approx(v, rel=1e-12), i


@pytest.mark.parametrize("nbits, ki, wi, fi, rtol", [
    (23, P._KI32, P._WI32, P._FI32, 1e-6), (52, P._KI64, P._WI64, P._FI64, 1e-13)])
def test_ziggurat_tables_consistent(nbits, ki, wi, fi, rtol):
    # Every entry against the defining relations (Marsaglia & Tsang 2000), so a single
    # corrupted entry anywhere fails: x_i = wi[i] 2**nbits are the layer edges, each
    # layer [0, x_i] x [f(x_i), f(x_{i-1})] has area V, and so has base strip + tail.
    scale = 2.0 ** nbits
    r, v = P.ZIGGURAT_R, P.ZIGGURAT_V
    x = wi.astype(np.float64) * scale
    f = fi.astype(np.float64)
    stats = pytest.importorskip("scipy.stats")
    tail = stats.norm.sf(r) * math.sqrt(2 * math.pi)
    assert x[255] == pytest.approx(r, rel=rtol)
    assert x[0] == pytest.approx(v / math.exp(-0.5 * r * r), rel=rtol)
    assert r * math.exp(-0.5 * r * r) + tail == pytest.approx(v, rel=1e-9)
    np.testing.assert_allclose(f[1:], np.exp(-0.5 * x[1:] ** 2), rtol=rtol)
    np.testing.assert_allclose(x[2:] * (f[1:-1] - f[2:]), v, rtol=1e3 * rtol)
    # ki: the fast-accept threshold x_{i-1}/x_i in units of 2**-nbits (1 ulp of slack
    # per rounded input); layer 1 has none, the base strip's is R / x_0.
    ratio = np.concatenate([[r / x[0], 0.0], x[1:-1] / x[2:]]) * scale
    assert np.all(np.abs(ki - ratio) <= 2 + 4 * rtol * scale)


# --------------------------------------------------------------------------------
# Seeds and state

def test_key_from_seed():
    assert key_from_seed(5).dtype == np.uint32 and key_from_seed(5).shape == (2,)
    np.testing.assert_array_equal(key_from_seed(5), key_from_seed(np.int64(5)))
    np.testing.assert_array_equal(key_from_seed(5), key_from_seed(np.random.SeedSequence(5)))
    assert not np.array_equal(key_from_seed(5), key_from_seed(6))
    assert not np.array_equal(key_from_seed(None), key_from_seed(None))


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (1.5, TypeError), ("7", TypeError),
                                      (True, TypeError), ([1, 2], TypeError)])
def test_key_from_seed_rejects(bad, exc):
    with pytest.raises(exc, match="seed"):
        key_from_seed(bad)
    with pytest.raises(exc, match="seed"):
        ChainStreams(bad, 3)


def test_chainstreams_validation():
    with pytest.raises(ValueError, match="n_chains"):
        ChainStreams(0, -1)
    with pytest.raises(ValueError, match="chain_offset"):
        ChainStreams(0, 2, chain_offset=2 ** 32 - 1)
    s = ChainStreams(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        s.normal(2, dtype=np.int32)
    with pytest.raises(ValueError, match="m"):
        s.normal(-1)
    state = s.get_state()
    with pytest.raises(ValueError, match="positions"):
        ChainStreams(0, 4).set_state(state)
    with pytest.raises(ValueError, match="key"):
        s.set_state({**state, "key": np.zeros(3, np.uint32)})
    with pytest.raises(ValueError, match="positions"):
        s.set_state({**state, "positions": np.array([0, -1, 2])})
    with pytest.raises(ValueError, match="positions"):
        s.set_state({"key": state["key"]})
    with pytest.raises(TypeError, match="state"):
        s.set_state([1, 2])


def test_state_round_trip_and_copy_safety():
    s = ChainStreams(11, 5, chain_offset=3, stream=INIT)
    s.normal(7, np.float32)
    pos = s.positions
    pos[:] = 0  # a copy: must not move the streams
    assert (s.positions > 0).all()
    buf = io.BytesIO()
    np.savez(buf, **s.get_state())
    after = [s.normal(5), s.uniform(dtype=np.float32), s.normal(3, np.float32)]
    buf.seek(0)
    with np.load(buf) as d:
        resumed = ChainStreams.from_state(d)
    assert resumed.chain_offset == 3 and resumed.stream == INIT and resumed.n_chains == 5
    again = [resumed.normal(5), resumed.uniform(dtype=np.float32),
             resumed.normal(3, np.float32)]
    for a, b in zip(after, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s.positions, resumed.positions)


# --------------------------------------------------------------------------------
# Invariance: threads, shards, chunking

_THREAD_SCRIPT = """
import hashlib, sys
import numba, numpy as np
from npebm.random import ChainStreams
s = ChainStreams(2024, 203)
h = hashlib.sha256()
for dt in (np.float32, np.float64):
    h.update(s.normal(67, dt).tobytes())
    h.update(s.uniform(dtype=dt).tobytes())
h.update(s.positions.tobytes())
print(numba.get_num_threads(), h.hexdigest())
"""


def test_identical_for_1_and_2_threads():
    expected = hashlib.sha256()
    s = ChainStreams(2024, 203)
    for dt in (np.float32, np.float64):
        expected.update(s.normal(67, dt).tobytes())
        expected.update(s.uniform(dtype=dt).tobytes())
    expected.update(s.positions.tobytes())
    for threads in ("1", "2"):
        # Same NUMBA_CACHE_DIR as this process (inherited), so the second run loads.
        env = dict(os.environ, NUMBA_NUM_THREADS=threads,
                   PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
        out = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [threads, expected.hexdigest()]


@pytest.mark.parametrize("split", [[10], [1, 9], [4, 6], [3, 3, 4]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_for_any_shard_split(split, dtype):
    full = ChainStreams(99, 10).normal(13, dtype)
    parts, offset = [], 0
    for n in split:
        parts.append(ChainStreams(99, n, chain_offset=offset).normal(13, dtype))
        offset += n
    np.testing.assert_array_equal(np.vstack(parts), full)


@given(m1=st.integers(0, 9), m2=st.integers(0, 9),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_identical_for_any_chunking(m1, m2, dtype):
    whole = ChainStreams(3, 6)
    a = whole.normal(m1 + m2, dtype)
    u = whole.uniform(dtype=dtype)
    parts = ChainStreams(3, 6)
    b = np.hstack([parts.normal(m1, dtype), parts.normal(m2, dtype)])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(u, parts.uniform(dtype=dtype))
    np.testing.assert_array_equal(whole.positions, parts.positions)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_draw_api_matches_batch(dtype):
    # The generic normal(..., like) picks the generator from out's dtype at compile
    # time; drawing one at a time with re-syncs (3 and 4 do not divide each other, so
    # resyncs land at pos % 4 != 0) gives the batch kernel's numbers exactly.
    s = ChainStreams(8, 7, chain_offset=5)
    ref = s.normal(11, dtype)
    out = np.empty((7, 11), dtype)
    pos = np.zeros(7, np.uint64)
    k = s.key
    _one_at_a_time(k[0], k[1], 5, NOISE, pos, out, 3)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(pos, s.positions)


def test_streams_differ():
    a = ChainStreams(1, 64).normal(64)
    b = ChainStreams(2, 64).normal(64)
    c = ChainStreams(1, 64, stream=INIT).normal(64)
    for other in (b, c):
        assert np.mean(a == other) < 1e-3
    assert len(np.unique(a[:, 0])) == 64  # chains differ from each other too


# --------------------------------------------------------------------------------
# Statistics (N = 2**20 draws per test)

N_SIDE = 1024
N = N_SIDE * N_SIDE


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["f32", "f64"])
def normals(request):
    return ChainStreams(20240601, N_SIDE).normal(N_SIDE, request.param)


@pytest.mark.slow
def test_normal_moments(normals):
    x = normals.astype(np.float64).ravel()
    # mean of N iid N(0,1): SE = 1/sqrt(N).  Sample variance: Var(s^2) = (mu4 - 1)/N
    # = 2/N for a normal, so SE = sqrt(2/N).  5 SE each.
    assert abs(x.mean()) < 5 / math.sqrt(N)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / N)


@pytest.mark.slow
def test_normal_ks(normals):
    stats = pytest.importorskip("scipy.stats")
    assert stats.kstest(normals.ravel().astype(np.float64), "norm").pvalue > 1e-3


@pytest.mark.slow
def test_normal_tail_mass(normals):
    # |x| > R only comes out of the tail branch; its count is Binomial(N, p) with
    # p = erfc(R / sqrt 2) ~ 2.6e-4; 5 SE = 5 sqrt(N p (1 - p)) ~ 80 of ~270.
    p = math.erfc(P.ZIGGURAT_R / math.sqrt(2))
    count = np.count_nonzero(np.abs(normals) > P.ZIGGURAT_R)
    assert abs(count - N * p) < 5 * math.sqrt(N * p * (1 - p))


@pytest.mark.slow
def test_normal_within_layers(normals):
    # Probability integral transform inside each ziggurat layer interval
    # (x_{i-1}, x_i]: U = (Phi(|x|) - Phi(x_{i-1})) / (Phi(x_i) - Phi(x_{i-1})) is exactly
    # uniform for normal draws.  A broken wedge test (rejection on the curved part of
    # a layer) skews U within every layer while barely moving the global CDF, which a
    # plain KS test cannot see.
    stats = pytest.importorskip("scipy.stats")
    a = np.abs(normals.astype(np.float64).ravel())
    edges = np.concatenate([[0.0], P._WI64[1:] * 2.0 ** 52])
    a = a[a < edges[-1]]
    i = np.searchsorted(edges, a, side="left")
    cdf = stats.norm.cdf(edges)
    u = (stats.norm.cdf(a) - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tail_branch_distribution(dtype):
    # Only ~2.6e-4 of draws reach the tail, too few in any practical sample to check
    # its shape, so drive the branch directly: given X > R, sf(X)/sf(R) ~ U(0, 1).
    stats = pytest.importorskip("scipy.stats")
    k = key_from_seed(4242)
    draw = _tail_draws32 if dtype == np.float32 else _tail_draws64
    x = draw(k[0], k[1], 1 << 18).astype(np.float64)
    # the sign comes from bit 8 of rabs (here j), so half the draws are negative
    assert np.count_nonzero(x < 0) == 1 << 17
    x = np.abs(x)
    assert x.min() > P.ZIGGURAT_R * (1 - 1e-6)
    u = stats.norm.sf(x) / stats.norm.sf(P.ZIGGURAT_R)
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.slow
def test_neighbouring_chains_uncorrelated(normals):
    # Under independence the sample correlation of n pairs has SE 1/sqrt(n).
    x = normals[:-1].astype(np.float64).ravel()
    y = normals[1:].astype(np.float64).ravel()
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(x.size)
    lag = normals.astype(np.float64)  # successive draws within a chain
    x, y = lag[:, :-1].ravel(), lag[:, 1:].ravel()
    assert abs(np.corrcoef(x, y)[0, 1]) < 5 / math.sqrt(x.size)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_ks_and_range(dtype):
    stats = pytest.importorskip("scipy.stats")
    u = ChainStreams(777, N_SIDE).uniform(N_SIDE, dtype)
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    assert stats.kstest(u.ravel().astype(np.float64), "uniform").pvalue > 1e-3


# --------------------------------------------------------------------------------

def test_import_is_light():
    code = ("import sys, npebm.random; "
            "assert 'numba' not in sys.modules and 'npebm._philox' not in sys.modules")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True)
    assert npebm.random.NOISE == P.NOISE == 0 and npebm.random.INIT == P.INIT == 1
