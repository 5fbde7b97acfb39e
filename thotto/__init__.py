"""Thotto: a self-hosted Reddit post scheduler on a durable, embeddable Trio job engine.

Two entry points, each its own package so that importing one does not load the other:

* :mod:`thotto.engine`, the job engine to embed (``thotto.engine.open_engine``);
* :mod:`thotto.app`, the whole product: store, engine, Reddit scheduler, API (``open_app``).

This module re-exports nothing: every ``import thotto.<anything>`` runs it first, so whatever it
imported would weigh on the engine too.
"""

__version__ = "0.1.0"
