"""Files: reading raws (:mod:`.raw`, the one rawpy import), their metadata, DNG tags, the output
writers and the one atomic way to write (:mod:`.atomic`)."""
