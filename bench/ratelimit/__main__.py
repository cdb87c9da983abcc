"""``python -m bench.ratelimit`` is ``python bench/ratelimit/run.py``."""

from bench.ratelimit.run import main

raise SystemExit(main())
