"""Plans, accounts (tenants) and their API keys."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

from quotas.policy import Quota, RateLimit, parse_quotas, parse_rates

MB = 1024 * 1024


def _validate_rates(value: str) -> None:
    parse_rates(value)


def _validate_quotas(value: str) -> None:
    parse_quotas(value)


class Plan(models.Model):
    """What an account may do: rate limits per key, quotas per account, and
    the sizes the validation endpoints accept."""

    name = models.SlugField(max_length=64, unique=True)
    rate_limits = models.CharField(
        max_length=255,
        blank=True,
        validators=[_validate_rates],
        help_text="Requests per API key, e.g. “10/s, 100/m, 5000/h” (periods s, m, h, d). Empty: none.",
    )
    quotas = models.CharField(
        max_length=255,
        blank=True,
        validators=[_validate_quotas],
        help_text="Units per account per UTC calendar window, e.g. “10000/day, 200000/month”. Empty: none.",
    )
    max_upload_bytes = models.PositiveBigIntegerField(
        default=100 * MB, help_text="The largest batch upload accepted, in bytes."
    )
    max_sync_instances = models.PositiveIntegerField(
        default=100, help_text="The most instances one synchronous validation call may carry."
    )
    # Django's own default (DATA_UPLOAD_MAX_MEMORY_SIZE), now per plan; the
    # service caps it at VALIDATION_SYNC_BODY_CEILING_BYTES whatever it says.
    max_sync_body_bytes = models.PositiveBigIntegerField(
        default=2_621_440,
        help_text="The largest JSON body of a synchronous call (validate, register a schema or a bundle), in bytes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @cached_property
    def rate_list(self) -> tuple[RateLimit, ...]:
        return parse_rates(self.rate_limits)

    @cached_property
    def quota_list(self) -> tuple[Quota, ...]:
        return parse_quotas(self.quotas)


class Account(models.Model):
    """A tenant. Its quotas are shared by all of its keys."""

    name = models.CharField(max_length=100, unique=True)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="accounts")
    is_active = models.BooleanField(
        default=True, help_text="An inactive account's keys are refused (401) until it is reactivated."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """An API key. Only ``prefix`` (public) and the SHA-256 of the secret are
    stored; the full key is shown once, when it is created."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute per key and process, never per request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"tg_{self.prefix}_…" + (f" ({self.label})" if self.label else "")

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class UsageRecord(models.Model):
    """The usage ledger: what one key of an account was admitted on one UTC
    day (``key_id`` 0: units given back by refunds, not tied to a key).

    Written only by ``quotas.ledger`` from batches drained out of Redis, each
    applied once (:class:`LedgerBatch`); never per request. ``units`` is net:
    leased units count until they are given back, refunds subtract (and are
    also counted in ``refunded``). Rows outlive their key and account (no
    database constraint on ``account``): they are what an operator bills from.
    """

    account = models.ForeignKey(Account, on_delete=models.DO_NOTHING, db_constraint=False, related_name="usage_records")
    key_id = models.PositiveBigIntegerField(help_text="The API key's id; 0 for refunds.")
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    units = models.BigIntegerField(default=0)
    refunded = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key_id", "day"], name="usage_record_unique")]
        indexes = [models.Index(fields=["day"], name="usage_record_day")]
        ordering = ["day", "account", "key_id"]

    def __str__(self) -> str:
        return f"account {self.account_id} key {self.key_id} {self.day}: {self.requests} requests, {self.units} units"


class LedgerBatch(models.Model):
    """One batch of an account's usage drained out of Redis and applied to
    the ledger, by its token: a batch drained twice (a flusher killed before
    it acknowledged it, two flushers at once) is applied once. ``drained_ms``
    is when Redis handed it out (epoch ms)."""

    account_id = models.BigIntegerField()
    token = models.CharField(max_length=32)
    drained_ms = models.BigIntegerField()
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account_id", "token"], name="ledger_batch_unique")]
        indexes = [models.Index(fields=["account_id", "drained_ms"], name="ledger_batch_drained")]

    def __str__(self) -> str:
        return f"batch {self.token} of account {self.account_id}"


class CounterEpoch(models.Model):
    """A life of the counters' Redis data, named by the token Tollgate keeps
    in it (``quotas.ledger.EPOCH_KEY``). A new token while an older one was
    known means Redis lost its data: ``lost`` is then true and the accounts'
    counters are restored from the ledger as they come back."""

    token = models.CharField(max_length=32, unique=True)
    run_id = models.CharField(max_length=64, blank=True)
    seen_at = models.DateTimeField(auto_now_add=True)
    lost = models.BooleanField(default=False)

    class Meta:
        ordering = ["-seen_at"]
        get_latest_by = "seen_at"

    def __str__(self) -> str:
        return f"counter epoch {self.token}" + (" (data lost before it)" if self.lost else "")
