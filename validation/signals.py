"""Signals of the validation app.

``job_finished`` is sent once a job has reached ``succeeded``, ``failed`` or
``cancelled`` (its row committed), with ``job_id`` and ``status``: the
webhooks app turns it into deliveries. Receivers must not raise.
"""

from django.dispatch import Signal

job_finished = Signal()
