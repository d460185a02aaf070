"""lowlight-raw: rescue badly underexposed camera RAW photos with a SID-style network."""

import os

__version__ = "0.2.0"

# OpenMP threads that wait passively (sleep) between parallel regions instead of spinning: on a
# busy or shared machine spinning workers steal the cores the work needs (24 MP on a 2-core machine
# under load: 2 threads were 1.9x slower than 1 until this was set). libgomp reads it once, when
# torch loads it, so it is set here, on import of the package: every entry point (lowlight-raw,
# the lr-bridge daemon, which imports this package first, and Dask workers, which import it to
# unpickle their tasks) gets it before torch. A value already in the environment is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
