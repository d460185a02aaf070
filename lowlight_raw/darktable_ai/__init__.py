"""Our networks inside darktable 5.6's own "neural restore" (raw denoise), as a ``.dtmodel`` package.

darktable passes a raw-denoise model one tile of the photo and nothing else: no ISO, no noise
level, no exposure ratio. :mod:`.blind` wraps a trained network so that it measures its tile's
gain and noise profile itself, inside the ONNX graph; :mod:`.package` exports both graphs (Bayer
and linear) and writes and checks the package; :mod:`.emulate` is a Python re-implementation of
darktable's pre- and post-processing around the graphs (tiles, overlap ramps, mirrored edges,
output scale, re-mosaic, strength blend, clip, the DNG it writes), run with onnxruntime, for the
tests and ``bench/dtmodel.py``. Built to darktable's documented contract (``src/common/ai/restore.h``
and the ``restore_raw_*.c`` files); not run inside darktable 5.6 here.
"""
