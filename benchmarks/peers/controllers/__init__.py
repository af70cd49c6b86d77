"""One module a controller: its process (start, stop, own counts), its objects (how N canaries
are made and brought to "paused at 50 %") and its promote / abort requests. `PEERS` by the
names `--controllers` takes."""

from __future__ import annotations

from .argo import Argo
from .base import Controller, Peer, Run
from .flagger import Flagger
from .ftrollout import FtrolloutPeer

PEERS: dict[str, Peer] = {p.name: p for p in (Argo(), FtrolloutPeer(), Flagger())}

__all__ = ["PEERS", "Controller", "Peer", "Run"]
