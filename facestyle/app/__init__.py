"""The web editor: a Gradio app over the :class:`~facestyle.editor.editor.Editor` (``facestyle serve``).

Needs the ``web`` extra (``pip install 'facestyle[web]'``); :func:`facestyle.app.server.build_app` builds
the page for an editor and :func:`facestyle.app.server.serve` runs it.
"""

from __future__ import annotations

__all__ = ["build_app", "serve", "ServerLimits"]


def __getattr__(name: str):
    if name in __all__:  # gradio is imported only when the app is used
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
