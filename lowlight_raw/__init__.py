"""lowlight-raw: rescue badly underexposed camera RAW photos with a SID-style network."""

import os

__version__ = "0.2.0"

# OpenMP threads that spin only briefly between parallel regions, then sleep: libgomp's default
# spins 300,000 times, and on a busy or shared machine spinning workers steal the cores the work
# needs (24 MP on a 2-core machine under load: 2 threads were 1.9x slower than 1); sleeping at once
# (OMP_WAIT_POLICY=PASSIVE, spin count 0) made each of the demosaics' and the denoiser's thousands
# of small operations wake its threads anew (24 MP Bayer end to end on two idle cores: 4.86 s,
# against 4.52 s at 1,000 spins; 100 spins 5.12 s, 10,000 4.43 s; under a competing process with
# 2 threads forced, 7.88 s against 8.82 s, and the engine takes one thread there: 7.99 s). 1,000
# is libgomp's own count for an oversubscribed machine. libgomp reads it once, when torch loads it,
# so it is set here, on import of the package: every entry point (lowlight-raw, the lr-bridge
# daemon, which imports this package first, and Dask workers, which import it to unpickle their
# tasks) gets it before torch. A wait policy or spin count already in the environment is kept
# (GOMP_SPINCOUNT would override the policy).
OPENMP_SPIN_COUNT = 1000
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", str(OPENMP_SPIN_COUNT))
