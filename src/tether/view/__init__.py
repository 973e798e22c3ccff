"""``tether view``: a local, read-only web viewer over a store and a campaign folder.

:mod:`~tether.view.data` reads runs, traces, approvals and campaign results into plain dicts;
:mod:`~tether.view.app` serves them and the page (``page/``) with Starlette, as ``tether serve``
does; :mod:`~tether.view.cli` is the command. Like ``tether serve`` it sits at the top with the
CLI and needs the ``serve`` extra: ``pip install 'tether[serve]'``. Nothing below imports it.
"""

from __future__ import annotations

__all__: list[str] = []
