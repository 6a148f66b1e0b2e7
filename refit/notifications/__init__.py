"""Email: templates rendered and sent by a queued job, through SMTP or a file outbox.

Callers use `refit.notifications.service.queue_email` / `notify_user` inside their transaction;
other domains that must not import this package defer the `notifications.notify_user` job by
name (`notify_tasks.py`).
"""
