"""Notifications, light on purpose (the API imports it; no Dagster here).

``events`` (what happened: the one writer, the outbox), ``fanout`` (who hears of it, by their
preferences), ``messages`` (what they read), ``preferences``, ``digests``, ``mail`` and ``webhooks``
(the channels), ``deliverer`` (``automat notify``: fans out, sends, retries, watches), ``audit``
(who changed what).
"""
