"""lowlight-raw: rescue badly underexposed camera RAW photos with a SID-style network."""

__version__ = "0.2.0"
