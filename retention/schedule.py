"""The periodic jobs, as ``rq cron`` loads them (``offboard cron`` runs this module).

Every job here is idempotent, so a missed or doubled run does no harm.
"""

from rq import cron

from audit import checkpoints, verifications
from compliance import feedback, notify, winback, workflow
from exporters import reconcile
from retention import backups, purge

cron.register(workflow.flag_missed_deadlines, queue_name="default", cron="*/5 * * * *",
              name="flag-missed-deadlines")
cron.register(reconcile.reconcile, queue_name="default", cron="* * * * *", name="reconcile-exports")
cron.register(notify.deliver_pending, queue_name="default", cron="* * * * *", name="deliver-outbox")
cron.register(checkpoints.scheduled, queue_name="default", cron="* * * * *", name="audit-checkpoint")
cron.register(purge.scheduled_sweep, queue_name="retention", cron="0 3 * * *", name="primary-purge-sweep")
cron.register(backups.scheduled_backup_sweep, queue_name="retention", cron="30 3 * * *",
              name="backup-purge-sweep")
cron.register(verifications.job, queue_name="default", cron="0 4 * * *",
              job_timeout=verifications.JOB_TIMEOUT, name="audit-verify")
cron.register(feedback.invite_due, queue_name="default", cron="15 * * * *", name="invite-exit-survey")
cron.register(winback.notify_due, queue_name="default", cron="45 * * * *", name="winback-reminders")
