"""bin/system-deps: the one list of system programs, installed with apt-get
where it can be, otherwise one message naming each missing program and the
command that installs it.

The script uses bash builtins only, so each test runs it with a PATH of its
own: an empty folder (nothing installed, no apt-get), or one holding a
stand-in apt-get that logs its arguments and "installs" a package by putting
an executable of that name on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.processes import ROOT

SCRIPT = ROOT / "bin" / "system-deps"
BASH = shutil.which("bash") or "/bin/bash"

# Installs the programs of the packages named (redis-tools holds redis-cli).
FAKE_APT_GET = """#!{bash}
echo "$*" >> {log}
[ "$1" = install ] || exit 0
for word in "$@"; do
  case "$word" in -*|install) continue ;; redis-tools) word=redis-cli ;; esac
  printf '#!{bash}\\n' > {bin}/"$word"
  {chmod} +x {bin}/"$word"
done
"""


def system_deps(*args: str, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": str(path), "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run([BASH, str(SCRIPT), *args], env=environ, capture_output=True, text=True, timeout=60)


def fake_apt_get(folder: Path) -> Path:
    """A stand-in apt-get in ``folder``; returns the log of its calls."""
    log = folder / "apt-get.log"
    (folder / "apt-get").write_text(FAKE_APT_GET.format(bash=BASH, log=log, bin=folder, chmod=shutil.which("chmod")))
    (folder / "apt-get").chmod(0o755)
    return log


def test_missing_programs_stop_with_one_message_naming_each_and_its_install_command(tmp_path: Path) -> None:
    result = system_deps("redis-server", "chromium", "openssl", path=tmp_path, TOLLGATE_CHROMIUM="/nowhere")
    assert result.returncode == 1
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("Missing programs")
    assert "redis-server: Debian/Ubuntu `sudo apt-get install redis-server`, macOS `brew install redis`" in message
    assert "chromium: Debian/Ubuntu `sudo apt-get install chromium`, macOS `brew install --cask chromium`" in message
    assert "openssl: Debian/Ubuntu `sudo apt-get install openssl`" in message
    assert "All of them: sudo apt-get install redis-server chromium openssl" in message


def test_on_macos_it_names_the_homebrew_commands(tmp_path: Path) -> None:
    result = system_deps(
        "redis-server", "redis-cli", "chromium", path=tmp_path, OSTYPE="darwin23", TOLLGATE_CHROMIUM="/x"
    )
    assert result.returncode == 1
    assert "All of them: brew install redis && brew install --cask chromium" in result.stderr


def test_as_root_on_debian_it_installs_what_is_missing_then_runs_the_command(tmp_path: Path) -> None:
    log = fake_apt_get(tmp_path)
    (tmp_path / "bash").symlink_to(BASH)
    result = system_deps("redis-server", "redis-cli", "--", "bash", "-c", "command -v redis-cli", path=tmp_path)
    if os.geteuid() == 0:
        assert result.returncode == 0, result.stderr
        assert log.read_text().splitlines() == ["update -qq", "install -y -qq redis-server redis-tools"]
        assert result.stdout.strip() == str(tmp_path / "redis-cli")
        assert "installing redis-server redis-tools (for redis-server redis-cli) with apt-get" in result.stderr
    else:  # without root and without sudo on this PATH: the message, no install
        assert result.returncode == 1 and not log.exists()


def test_nothing_missing_touches_no_package_manager(tmp_path: Path) -> None:
    log = fake_apt_get(tmp_path)
    for program in ("redis-server", "openssl"):
        (tmp_path / program).write_text(f"#!{BASH}\n")
        (tmp_path / program).chmod(0o755)
    result = system_deps("redis-server", "openssl", path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not log.exists()


def test_programs_off_path_are_found_and_their_folder_added_for_the_command(tmp_path: Path) -> None:
    pg_bin = Path("/usr/lib/postgresql")
    folders = sorted(pg_bin.glob("*/bin/initdb"))
    (tmp_path / "bash").symlink_to(BASH)
    result = system_deps("initdb", "--", "bash", "-c", 'echo "$PATH"', path=tmp_path)
    if folders:  # Debian's layout: initdb is not on PATH
        assert result.returncode == 0, result.stderr
        assert str(folders[0].parent) in result.stdout.strip().split(":")
    else:
        assert result.returncode == 1 and "sudo apt-get install postgresql" in result.stderr


def test_an_unknown_program_is_a_usage_error(tmp_path: Path) -> None:
    result = system_deps("nginx", path=tmp_path)
    assert result.returncode == 2
    assert "unknown program 'nginx'" in result.stderr
