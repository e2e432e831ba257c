"""Is a download host reachable? A quick probe before tfds' download loop.

Without a network, tfds' downloader retries each file for minutes, printing a
warning per attempt. One HEAD request, made with ``requests`` as tfds makes its
downloads (so through the same ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``,
``NO_PROXY`` honoured), without retries and with a short timeout, tells in
seconds whether trying makes sense. Any HTTP answer below 500 counts as
reachable; 5xx (a proxy's "bad gateway") and failed connections, name lookups or
TLS handshakes do not.
"""

from __future__ import annotations

import threading
import urllib.parse

import requests


def unreachable(url: str, *, timeout: float = 5.0) -> str | None:
  """Why ``url``'s host does not answer; None when it does.

  Name resolution counts against ``timeout`` too: the request runs in a thread
  that is given up on (not waited for) once the time is spent.
  """
  outcome: list[str | None] = []
  thread = threading.Thread(target=lambda: outcome.append(_head(url, timeout)), daemon=True)
  thread.start()
  thread.join(timeout)
  where = _where(url)
  if not outcome:
    return f'{where} did not answer within {timeout:g} s'
  return None if outcome[0] is None else f'{where} cannot be reached ({outcome[0]})'


def _head(url: str, timeout: float) -> str | None:
  try:
    with requests.Session() as session:  # A plain session: no retries.
      response = session.head(url, timeout=timeout, allow_redirects=False)
  except requests.RequestException as e:
    return _reason(e)
  if response.status_code >= 500:
    return f'HTTP {response.status_code} {response.reason}'
  return None


def _reason(error: BaseException) -> str:
  """The innermost cause's words: 'Name or service not known', not three wrappers' reprs."""
  seen, inner = set(), error
  while id(inner) not in seen:
    seen.add(id(inner))
    nxt = getattr(inner, 'reason', None)
    nxt = nxt if isinstance(nxt, BaseException) else inner.__cause__ or inner.__context__
    if nxt is None:
      break
    inner = nxt
  for e in (inner, error):
    if isinstance(e, OSError) and isinstance(e.strerror, str) and e.strerror:
      return e.strerror
  text = ' '.join(str(inner).split()) or type(inner).__name__
  return text if len(text) <= 160 else text[:157] + '...'


def _where(url: str) -> str:
  """'host:port', and ' (the proxy for HOST)' after the proxy's when requests would use one."""
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname or ''
  proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
  if proxy:
    p = urllib.parse.urlsplit(proxy if '://' in proxy else f'http://{proxy}')
    return f'{p.hostname}:{p.port or 80} (the proxy for {host})'
  return f'{host}:{parts.port or {"https": 443}.get(parts.scheme, 80)}'
