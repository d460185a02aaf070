"""The sensor layouts: how a raw's mosaic is packed, demosaiced and rendered (:mod:`.registry` has them all)."""
