"""Use cases: each action a person takes, once, for every caller (the HTTP API and the CLI).

A use case owns the store change and everything that must follow it (cache invalidation in every
process), so no caller can do one without the other. :mod:`thotto.usecases.users` holds the
actions that change who may do what.
"""
