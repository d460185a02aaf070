"""The numeric stages between a decoded raw and an output image: exposure, noise, network input,
tiling and device, restoration (network + classical blend), colour."""
