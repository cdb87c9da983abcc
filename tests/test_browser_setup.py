from __future__ import annotations

from pathlib import Path

import pytest

from tests import browser


def test_missing_chromium_fails_loudly_with_the_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium-here"))
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"), browser.chromium(tmp_path):
        pass
