"""bench/ratelimit: Tollgate's enforcement against no enforcement and three
peers (django-ratelimit, limits, DRF throttling), on real gunicorn and private
Redis servers. Run ``python bench/ratelimit/run.py`` (see bench/README.md)."""
