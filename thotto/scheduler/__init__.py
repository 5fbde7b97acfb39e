"""The Reddit product on the job engine: posts, publishing, recurrence, subreddit rules,
engagement analytics, the media library and webhooks.

:class:`thotto.scheduler.scheduler.Scheduler` installs the product's handlers and cron jobs into
an engine (:mod:`thotto.engine`); the composition root (:mod:`thotto.app`) does so at startup.
This package's ``__init__`` imports nothing: the store and every other module import the records
(:mod:`thotto.scheduler.records`) without loading the Reddit client or the publisher.
"""
