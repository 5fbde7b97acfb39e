"""Thotto: a self-hosted Reddit post scheduler on a durable, embeddable Trio job engine."""

__version__ = "0.1.0"
