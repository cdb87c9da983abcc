from tests.validation.conftest import media_root  # noqa: F401  (uploads go to the test's own directory)
