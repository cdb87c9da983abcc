"""Django's PostgreSQL backend with bounded waits (see ``base``)."""
