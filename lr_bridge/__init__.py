"""lr_bridge: the warm lowlight-raw daemon, its ZeroMQ protocol and the ``lr-bridge`` client.

The daemon (``lr-bridge serve``) loads the engine once and serves enhance jobs over ZeroMQ;
the client (``lr-bridge enhance``) finds or starts it and streams the job's events. The wire
protocol is described in ``PROTOCOL.md`` beside this file and implemented in :mod:`.protocol`.
"""

from lowlight_raw import __version__

__all__ = ["__version__"]
