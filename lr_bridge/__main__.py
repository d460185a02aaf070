"""``python -m lr_bridge`` is the ``lr-bridge`` command (the client autostarts the daemon this way)."""

from lr_bridge.cli import main

raise SystemExit(main())
