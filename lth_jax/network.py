"""Is a download host reachable? A quick probe before tfds' download loop.

Without a network, tfds' downloader retries each file for minutes, printing a
warning per attempt. One TCP connection to the host (or to the proxy that
``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` name for it, as ``requests``
would use, ``NO_PROXY`` honoured) tells in seconds whether trying makes sense.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request

_DEFAULT_PORTS = {'http': 80, 'https': 443}


def unreachable(url: str, *, timeout: float = 5.0) -> str | None:
  """Why ``url``'s host (or its proxy) takes no connection; None when it does.

  Name resolution counts against ``timeout`` too: it runs in a thread that is
  given up on (not waited for) once the time is spent.
  """
  target, via = _target(url)
  outcome: list[str | None] = []

  def probe():
    try:
      socket.create_connection(target, timeout=timeout).close()
      outcome.append(None)
    except OSError as e:
      outcome.append(e.strerror or str(e) or type(e).__name__)

  thread = threading.Thread(target=probe, daemon=True)
  thread.start()
  thread.join(timeout)
  where = f'{target[0]}:{target[1]}{via}'
  if not outcome:
    return f'{where} did not answer within {timeout:g} s'
  return None if outcome[0] is None else f'{where} cannot be reached ({outcome[0]})'


def _target(url: str) -> tuple[tuple[str, int], str]:
  """(host, port) to connect to for ``url``, and ' (proxy for HOST)' when it is a proxy."""
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname or ''
  proxies = urllib.request.getproxies()
  proxy = proxies.get(parts.scheme) or proxies.get('all')
  if proxy and not urllib.request.proxy_bypass(host):
    p = urllib.parse.urlsplit(proxy if '://' in proxy else f'http://{proxy}')
    port = p.port or _DEFAULT_PORTS.get(p.scheme, 80)
    return (p.hostname or '', port), f' (the proxy for {host})'
  return (host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)), ''
