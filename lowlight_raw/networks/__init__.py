"""The networks: the shipped models by name (:mod:`.catalog`, no torch), the architectures (:mod:`.registry`),
their modules (:mod:`.sid_unet`) and the one way to save and load weights (:mod:`.weights`)."""
