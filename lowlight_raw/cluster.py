"""The name a Dask worker preloads: ``dask worker SCHEDULER --preload lowlight_raw.cluster``.

Dask calls this module's ``dask_setup`` when the worker starts (:func:`lowlight_raw.backends.dask_worker.dask_setup`).
"""

from .backends.dask_worker import dask_setup

__all__ = ["dask_setup"]
