"""The virtual camera's states per OS, as `livesharp devices` reports them and `require_virtual_camera`
refuses them.

Stand-ins for what cannot exist on a test machine: there is no v4l2loopback module and no OBS here,
so the tests set ``sys.platform``, put a stand-in (or None, for "not installed") in
``sys.modules["pyvirtualcam"]``, and point ``sinks.SYS`` / ``LIB_MODULES`` / ``ETC`` at small
trees shaped like /sys, /lib/modules and /etc on a machine in each state.
"""

import os
import platform
import sys
import time
import types

import pytest
from click.testing import CliRunner

from livesharp import sinks
from livesharp.cli import cli
from livesharp.errors import LivesharpError

MODPROBE = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=LiveSharp"


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A Linux machine with pyvirtualcam installed and no v4l2loopback: tests add what their state has."""
    root = tmp_path
    for d in ("sys/module/videodev", "sys/class/video4linux", "etc/modules-load.d", f"lib/modules/{os.uname().release}"):
        (root / d).mkdir(parents=True)
    (root / "lib/modules" / os.uname().release / "modules.dep").write_text("kernel/drivers/media/v4l2-core/videodev.ko.zst:\n")
    monkeypatch.setattr(sinks, "SYS", root / "sys")
    monkeypatch.setattr(sinks, "LIB_MODULES", root / "lib/modules")
    monkeypatch.setattr(sinks, "ETC", root / "etc")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "pyvirtualcam", types.ModuleType("pyvirtualcam"))
    return root


def video_device(root, n, name, loopback=True):
    d = root / f"sys/class/video4linux/video{n}"
    d.mkdir()
    (d / "name").write_text(name + "\n")
    if loopback:
        (d / "max_openers").write_text("10\n")  # an attribute only v4l2loopback's devices have


def one_line_error():
    t = time.perf_counter()
    with pytest.raises(LivesharpError) as e:
        sinks.require_virtual_camera()
    assert time.perf_counter() - t < 1.0
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_without_the_extra_every_os_names_it_and_the_install_line(machine, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # import fails as if not installed
    for os_name in ("linux", "darwin", "win32"):
        monkeypatch.setattr(sys, "platform", os_name)
        status = sinks.virtual_camera_status()
        assert status.startswith("pyvirtualcam not installed") and 'pip install ".[virtualcam]"' in status and "GPL-2.0" in status
        msg = one_line_error()
        assert msg.startswith("--virtual needs the optional pyvirtualcam package") and 'pip install ".[virtualcam]"' in msg


def test_linux_without_the_module_installed_says_to_install_the_package_first(machine):
    st = sinks.virtual_camera_state()
    assert st.ready is False and st.summary == "v4l2loopback is not installed"
    assert "v4l2loopback-dkms" in st.fixes[0] and MODPROBE in st.fixes[1]
    text = sinks.virtual_camera_status()
    assert "mokutil" in text and "Key was rejected" in text  # Secure Boot's signing
    assert "/etc/modules-load.d/v4l2loopback.conf" in text and "/etc/modprobe.d/v4l2loopback.conf" in text  # every boot
    msg = one_line_error()
    assert msg.startswith("no virtual camera device (v4l2loopback is not installed)")
    assert msg.index("v4l2loopback-dkms") < msg.index(MODPROBE)


def test_linux_installed_but_not_loaded_gives_the_modprobe_line_and_secure_boot(machine):
    dep = machine / "lib/modules" / os.uname().release / "modules.dep"
    dep.write_text(dep.read_text() + "updates/dkms/v4l2loopback.ko.zst: kernel/drivers/media/v4l2-core/videodev.ko.zst\n")
    st = sinks.virtual_camera_state()
    assert st.ready is False and st.summary == "v4l2loopback is installed but not loaded"
    assert st.fixes[0] == MODPROBE and "Secure Boot" in st.fixes[1]
    # With Secure Boot on (its EFI variable: 4 attribute bytes, then 1) the summary says so.
    var = machine / "sys" / sinks._SECURE_BOOT_VAR
    var.parent.mkdir(parents=True)
    var.write_bytes(b"\x06\x00\x00\x00\x01")
    assert "Secure Boot is on" in sinks.virtual_camera_state().summary
    assert MODPROBE in one_line_error()


def test_linux_module_loaded_without_a_device_says_to_reload_it(machine):
    (machine / "sys/module/v4l2loopback").mkdir()
    video_device(machine, 0, "Integrated Camera: Integrated C", loopback=False)  # a real webcam is not one
    st = sinks.virtual_camera_state()
    assert st.ready is False and "loaded but made no device" in st.summary
    assert st.fixes[0] == f"sudo modprobe -r v4l2loopback && {MODPROBE}"


def test_linux_ready_lists_the_devices_and_whether_they_load_at_boot(machine):
    (machine / "sys/module/v4l2loopback").mkdir()
    video_device(machine, 0, "Integrated Camera: Integrated C", loopback=False)
    video_device(machine, 10, "Dummy video device (0x0000)")  # the module's default label
    video_device(machine, 9, "LiveSharp")
    st = sinks.virtual_camera_state()
    assert st.ready is True
    assert st.summary == "ready: /dev/video9 (LiveSharp), /dev/video10 (Dummy video device (0x0000))"
    assert "modules-load.d" in st.fixes[0]  # loaded by hand: it will be gone after a reboot
    (machine / "etc/modules-load.d/v4l2loopback.conf").write_text("# livesharp\nv4l2loopback\n")
    assert sinks.virtual_camera_state().fixes == ()
    sinks.require_virtual_camera()  # passes


def test_macos_and_windows_name_the_obs_version_and_its_camera_name(machine, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    for version, obs in (("14.5", "OBS Studio 30+"), ("12.7", "OBS Studio 28+")):
        monkeypatch.setattr(platform, "mac_ver", lambda v=version: (v, ("", "", ""), "arm64"))
        text = sinks.virtual_camera_status()
        assert obs in text and '"OBS Virtual Camera"' in text
    monkeypatch.setattr(sys, "platform", "win32")
    text = sinks.virtual_camera_status()
    assert "OBS Studio 28+" in text and '"OBS Virtual Camera"' in text
    sinks.require_virtual_camera()  # OBS is found only by opening the camera: no early refusal
    assert '"OBS Virtual Camera"' in sinks.virtual_camera_help("'obs' backend: OBS Virtual Camera is not installed")


def test_devices_prints_the_state_and_each_fix(machine):
    r = CliRunner().invoke(cli, ["devices"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    i = lines.index("virtual camera: v4l2loopback is not installed")
    assert any("v4l2loopback-dkms" in line for line in lines[i + 1:])
    assert all(line.startswith("  - ") for line in lines[i + 1:])
