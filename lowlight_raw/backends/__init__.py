"""Where files are enhanced: in this process (:mod:`.base`) or on a Dask cluster (:mod:`.dask_client`,
:mod:`.dask_worker`); :mod:`.spec` describes a cluster with the standard library alone."""
