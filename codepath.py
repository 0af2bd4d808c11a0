"""The CPU code paths and threads of every run, fixed before torch, MKL and numba load (import this first).

A library left to itself picks its instructions by the CPU it finds (MKL's matrix products, torch's own
kernels, the code numba compiles), and different instructions sum in different orders: the last bits of
a training step change, and the spiking sleep amplifies them into other per-seed accuracies. So by default
every path is pinned to AVX2, which every x86-64 CPU since 2013 runs:
- MKL_CBWR=AVX2,STRICT: MKL's AVX2 branch, the same results at any thread count. MKL honours a branch only
  on Intel CPUs; on others it keeps its own choice (on the AMD EPYC the docs' numbers were made on, that
  gives the same numbers as the AVX2 and AVX-512 requests). SRC_CODE_PATH=compatible asks for MKL's
  COMPATIBLE branch instead, the one it runs alike on every vendor's CPU, several times slower;
- ATEN_CPU_CAPABILITY=avx2: torch's vectorised kernels (reductions, softmax, ...);
- NUMBA_CPU_NAME=haswell: the sleep kernel compiled for AVX2 and FMA.
SRC_CODE_PATH=auto lets every library choose again (faster on some CPUs; other per-seed numbers there).
A value the environment already sets is kept.

Threads: as many as the cores this process may use (its affinity, which a cluster's scheduler sets), and
OpenMP threads that spin only briefly before they sleep (GOMP_SPINCOUNT=30000): on a shared machine
threads spinning the default 300 000 rounds steal each other's cores, and not spinning at all costs ~10 %
when the machine is idle (docs/speed.md). numpy's OpenBLAS, which serves only the small analyses (PCA,
capacity; torch's products run in MKL), gets one thread: its idle threads spin and slowed training ~10 %.
"""
import os

PATHS = {
    "avx2": dict(MKL_CBWR="AVX2,STRICT", ATEN_CPU_CAPABILITY="avx2", NUMBA_CPU_NAME="haswell"),
    "compatible": dict(MKL_CBWR="COMPATIBLE", ATEN_CPU_CAPABILITY="avx2", NUMBA_CPU_NAME="haswell"),
    "auto": dict(MKL_CBWR="AUTO,STRICT"),   # still the same results at any thread count
}
CODE_PATH = os.environ.get("SRC_CODE_PATH", "avx2")
if CODE_PATH not in PATHS:
    raise SystemExit(f"SRC_CODE_PATH must be one of {', '.join(PATHS)}; got {CODE_PATH!r}")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
for _name, _value in dict(PATHS[CODE_PATH], OMP_NUM_THREADS=str(CORES), GOMP_SPINCOUNT="30000",
                          NUMBA_NUM_THREADS=str(CORES), OPENBLAS_NUM_THREADS="1").items():
    os.environ.setdefault(_name, _value)

if not os.access(os.path.dirname(os.path.abspath(__file__)), os.W_OK):   # a read-only checkout: numba's cache elsewhere
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~/.cache") if os.access(
        os.path.expanduser("~"), os.W_OK) else "/tmp", f"src-numba-{os.getuid()}"))


def describe():
    """The code path and threads in force, for the records of a run."""
    return dict(code_path=CODE_PATH, **{k: os.environ.get(k, "") for k in
                                        ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "NUMBA_CPU_NAME", "OMP_NUM_THREADS", "GOMP_SPINCOUNT",
                                        "OPENBLAS_NUM_THREADS")})
