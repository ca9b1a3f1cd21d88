"""An embedded, Toxiproxy-compatible server, so link faults need no image and no daemon.

It speaks Toxiproxy 2.x's HTTP API (same endpoints, JSON shapes, defaults and status codes)
and implements its toxics (latency, bandwidth, slow_close, timeout, reset_peer, slicer,
limit_data, noop), so the same client code drives it, a ``ghcr.io/shopify/toxiproxy``
container or any running Toxiproxy.

Our one extension, not in Toxiproxy: **blackhole**. ``PATCH /proxies/{name}`` (or ``POST``)
with ``{"blackhole": true}`` makes the proxy forward nothing in either direction on its
established connections (bytes are held, not dropped: TCP flow control backs up, and neither
peer sees a reset or an end of stream), and accept new connections without dialling the
upstream, silently. ``{"blackhole": false}`` (or ``POST /reset``) delivers what was held and
dials what waited, like a healed network partition. Proxy JSON carries a ``"blackhole"`` field
only on this server, which is how a client tells that the extension is there. Against a real
Toxiproxy the same hang comes from a ``timeout`` toxic with ``timeout: 0`` on both streams
(data is then dropped rather than held, and removing the toxic closes the connections it
held, exactly as Toxiproxy does and as this server does too).

Checked side by side against toxiproxy-server 2.12.0 (``DCFIRE_TOXIPROXY_URL`` runs
``tests/toxiproxy`` against any server). Deliberate differences: no ``"Logger": {}`` in proxy
JSON (a Go struct field Toxiproxy leaks); a client's half-close reaches the upstream as a
half-close (Toxiproxy closes the upstream socket, so the reply races the close; likewise a
``limit_data`` upstream toxic here always ends both sides at once, one of the two outcomes of
that race); smaller buffers behind a slow reader; lookup errors without the nameserver;
where a toxic takes Toxiproxy down (a negative ``bandwidth`` rate panics on the first data; a
``slicer`` panics when a random split falls outside the chunk, and recurses without end,
growing its stack to gigabytes, when ``average_size + size_variation`` is below 1) this
server holds like rate 0, or keeps the pieces within the chunk and a byte long; and Toxiproxy
dials each upstream connection inside its accept loop, so a slow dial holds up the proxy's
later clients, where this server dials for each client at once.

Data-plane corners that follow Toxiproxy's source rather than its README (tests in
``tests/toxiproxy/test_toxiproxy_parity.py``, all run against toxiproxy-server 2.12):
``bandwidth`` with ``rate: 0`` passes nothing (the data and the end of stream wait until the
toxic is updated or removed), not "no limit"; ``timeout`` closes the link ``timeout`` ms after
the last chunk it dropped (each chunk restarts the timer), not after the toxic started; a
``reset_peer`` resets only connections that started with one in their chain (they get
SO_LINGER 0 on both sockets and keep it: any later close of theirs is a reset, even after
the toxic is removed), while one added to an open connection closes it with a FIN; once it
has data, a ``reset_peer`` cannot be stopped (removing it does not prevent the close). Adding
or removing a toxic interrupts and runs again the toxic before it on every live link, as does
an update: latency, bandwidth and slicer pass on at once the chunk they were working on, a
timeout restarts its timer and the toxicity is drawn anew. A ``slicer``'s negative
``size_variation`` lowers the size it stops splitting at.
"""

from __future__ import annotations

from pytest_dcfire.toxiproxy.api import TOXIPROXY_API_VERSION
from pytest_dcfire.toxiproxy.proxy import ProxyError
from pytest_dcfire.toxiproxy.server import EmbeddedToxiproxy, ToxiproxyServer

__all__ = ["TOXIPROXY_API_VERSION", "EmbeddedToxiproxy", "ProxyError", "ToxiproxyServer"]
