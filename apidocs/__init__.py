"""The API's OpenAPI 3.1 description (``/api/v1/openapi.json``) and its
browsable page (``/api/docs/``)."""
