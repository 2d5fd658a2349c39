"""Tests for livesharp/settings.py and the package face: no state changes hidden in an import."""

import os
import subprocess
import sys

from click.testing import CliRunner

from livesharp import settings
from livesharp.cli import cli


def test_importing_livesharp_loads_nothing_heavy_and_changes_nothing():
    # A fresh interpreter: this one has long since imported everything.
    code = (
        "import os, sys\n"
        "import livesharp, livesharp.cli\n"
        "heavy = [m for m in ('torch', 'cv2', 'av', 'livesharp.engine', 'livesharp.pipeline', 'livesharp.live') if m in sys.modules]\n"
        "print(heavy, os.environ.get('GOMP_SPINCOUNT'))\n"
        "from livesharp import Sharpener, process_file, process_image\n"  # the lazy names still resolve
        "print(Sharpener.__module__, process_file.__module__, process_image.__module__)\n"
        "from livesharp import run_live\n"
        "print(run_live.__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[] None", "livesharp.engine livesharp.pipeline livesharp.pipeline", "livesharp.live"]


def test_an_unknown_name_is_still_an_attribute_error():
    import livesharp

    try:
        livesharp.Sharpner  # noqa: B018
    except AttributeError as e:
        assert "Sharpner" in str(e)
    else:
        raise AssertionError("livesharp.Sharpner resolved")


def test_the_cli_applies_the_thread_policy(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    r = CliRunner().invoke(cli, ["devices"])
    assert r.exit_code == 0, r.output
    assert os.environ["GOMP_SPINCOUNT"] == settings.SPINCOUNT


def test_the_thread_policy_leaves_a_users_own_choice_alone(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    settings.apply_thread_policy()
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    settings.apply_thread_policy()
    assert os.environ["GOMP_SPINCOUNT"] == "7"


def test_the_models_folder_is_read_when_used(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVESHARP_MODELS", str(tmp_path))
    assert settings.shipped_weights("tiny") == tmp_path / "livesharp-tiny.pt"
    monkeypatch.delenv("LIVESHARP_MODELS")
    assert settings.shipped_weights("tiny") == settings.SHIPPED_MODELS / "livesharp-tiny.pt"
