import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train.teachers import (
    SPEC_KEY,
    OnnxTeacher,
    Restormer,
    RestormerTeacher,
    TeacherCache,
    TeacherError,
    TeacherSpec,
    load_restormer,
    make_teacher,
    tiled_forward,
)

# The shared reference vectors sit beside the repository on dev machines, not in CI.
REFERENCE = (Path(__file__).resolve().parent / "../../../shared/restormer_reference").resolve()


@pytest.fixture(scope="module")
def restormer():
    """The full motion-deblurring configuration with every weight perturbed (so that norms and
    temperatures are not their trivial initial values)."""
    torch.manual_seed(0)
    model = Restormer()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(restormer, tmp_path_factory):
    """``restormer`` saved in the official layout."""
    path = tmp_path_factory.mktemp("ckpt") / "motion_deblurring.pth"
    torch.save({"params": restormer.state_dict()}, path)
    return path


def test_restormer_matches_official_key_layout():
    state = Restormer().state_dict()
    assert len(state) == 494
    assert sum(t.numel() for t in state.values()) == 26_126_644
    keys = list(state)
    assert keys[0] == "patch_embed.proj.weight" and keys[-1] == "output.weight"
    assert state["encoder_level1.0.ffn.project_in.weight"].shape == (254, 48, 1, 1)
    assert state["latent.7.attn.temperature"].shape == (8, 1, 1)
    assert state["reduce_chan_level3.weight"].shape == (192, 384, 1, 1)
    assert state["decoder_level1.3.attn.qkv.weight"].shape == (288, 96, 1, 1)
    assert state["refinement.3.norm2.body.bias"].shape == (96,)
    assert "reduce_chan_level1.weight" not in state


def test_restormer_odd_size_is_reflect_padded_inside(restormer):
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        y = restormer(x)
        padded = restormer(F.pad(x, (0, 3, 0, 3), mode="reflect"))[..., :37, :45]
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert not torch.allclose(y, x, atol=1e-3)
    torch.testing.assert_close(y, padded, rtol=1e-5, atol=1e-5)


def test_restormer_tiny_frame():
    net = Restormer(num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 5, 3))
    assert y.shape == (2, 3, 5, 3)
    assert torch.isfinite(y).all()


def test_load_restormer_round_trip(restormer, checkpoint, tmp_path):
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        expected = restormer(x)
    bare = tmp_path / "bare.pt"
    torch.save(restormer.state_dict(), bare)
    for path in (checkpoint, bare):
        model = load_restormer(path)
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
        with torch.no_grad():
            assert torch.equal(model(x), expected)


def test_load_restormer_names_missing_key(restormer, tmp_path):
    state = dict(restormer.state_dict())
    del state["encoder_level1.0.attn.qkv.weight"]
    path = tmp_path / "partial.pth"
    torch.save({"params": state}, path)
    with pytest.raises(TeacherError, match=r"partial\.pth: not a Restormer .*missing keys encoder_level1\.0\.attn\.qkv\.weight"):
        load_restormer(path)


def test_load_restormer_rejects_bad_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="garbage.pth: not a readable checkpoint"):
        load_restormer(garbage)
    with pytest.raises(TeacherError, match="absent.pth: no such file"):
        load_restormer(tmp_path / "absent.pth")
    other = tmp_path / "other.pth"
    torch.save({"params": nn.Conv2d(3, 3, 3).state_dict()}, other)
    with pytest.raises(TeacherError, match=r"missing keys .* \(491 more\); unexpected keys weight, bias"):
        load_restormer(other)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/restormer_reference is not beside the repository")
def test_restormer_matches_official_reference_vector():
    keys = json.loads((REFERENCE / "motion_deblurring_keys.json").read_text())
    # The weight synthesis described in shared/restormer_reference/README.md.
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in keys.items():
        t = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            state[key] = t / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("bias"):
            state[key] = 0.1 * t
        else:
            state[key] = 1 + 0.1 * t
    model = Restormer()
    assert list(model.state_dict()) == list(keys)
    model.load_state_dict(state, strict=True)
    ref = torch.load(REFERENCE / "io_seed0.pt", weights_only=True)
    with torch.no_grad():
        y = model.eval()(ref["x"])
    assert (y - ref["y"]).norm() / (ref["y"] - ref["x"]).norm() < 1e-4


def local_net():
    """A small conv net whose receptive field reaches 8 pixels (17 wide): the most that
    tiled_forward reproduces exactly with overlap=16."""
    torch.manual_seed(1)
    layers = [nn.Conv2d(3, 6, 5, padding=2), nn.GELU(), nn.Conv2d(6, 6, 5, padding=2), nn.GELU()]
    layers += [nn.Conv2d(6, 6, 5, padding=2), nn.GELU(), nn.Conv2d(6, 3, 5, padding=2)]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("size", [(150, 300), (129, 128), (97, 257)])
def test_tiled_forward_equals_untiled_for_local_function(size):
    net = local_net()
    x = torch.rand(2, 3, *size)
    seen = []

    def fn(t):
        seen.append(t.shape[-2:])
        return net(t)

    with torch.no_grad():
        tiled = tiled_forward(fn, x, tile=128, overlap=16)
        whole = net(x)
    assert len(seen) > 1 and all(h <= 128 and w <= 128 for h, w in seen)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
    # The blending weights form a partition of unity: constant in, the same constant out.
    torch.testing.assert_close(tiled_forward(torch.ones_like, x, tile=128, overlap=16), torch.ones_like(x))


def test_tiled_forward_single_tile_is_exact_and_checks_arguments():
    net = local_net()
    x = torch.rand(1, 3, 60, 80)
    with torch.no_grad():
        assert torch.equal(tiled_forward(net, x, tile=80, overlap=16), net(x))
    with pytest.raises(ValueError, match="tile >= 4 \\* overlap"):
        tiled_forward(net, x, tile=40, overlap=16)


def test_restormer_teacher(restormer, checkpoint):
    teacher = make_teacher(f"restormer:{checkpoint}")
    assert isinstance(teacher, RestormerTeacher)
    assert teacher.name == "restormer:" + hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    x = torch.rand(1, 3, 21, 27)
    with torch.no_grad():
        expected = restormer(x).clamp(0, 1)
    torch.testing.assert_close(teacher(x), expected)
    teacher.tile, teacher.overlap = 32, 4  # a frame larger than a tile goes through tiles
    y = teacher(torch.rand(1, 3, 24, 44))
    assert y.shape == (1, 3, 24, 44) and y.min() >= 0 and y.max() <= 1


def test_make_teacher_specs(tmp_path, monkeypatch):
    assert make_teacher("none") is None
    monkeypatch.setattr(RestormerTeacher, "from_checkpoint", lambda path, device: ("restormer", path))
    monkeypatch.setattr("train.teachers.OnnxTeacher", lambda path, device: ("onnx", path))
    assert make_teacher("restormer:w/x.bin") == ("restormer", "w/x.bin")
    assert make_teacher("w/x.pth") == ("restormer", "w/x.pth")
    assert make_teacher("w/x.pt") == ("restormer", "w/x.pt")
    assert make_teacher("onnx:w/x.bin") == ("onnx", "w/x.bin")
    assert make_teacher("w/x.onnx") == ("onnx", "w/x.onnx")
    monkeypatch.undo()
    with pytest.raises(TeacherError, match="expected none, restormer:PATH, onnx:PATH"):
        make_teacher("restormer")
    with pytest.raises(TeacherError, match="nothing.pth: no such file"):
        make_teacher(f"restormer:{tmp_path / 'nothing.pth'}")


class HalfResNet(nn.Module):
    """Needs even sides: a pool and an upsample, so a shape mismatch shows missing padding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x):
        y = self.b(F.interpolate(F.avg_pool2d(torch.relu(self.a(x)), 2), scale_factor=2.0, mode="nearest"))
        return x + 0.1 * y


class ByteNHWC(nn.Module):
    """HalfResNet as a model that takes and returns NHWC in [0, 255]."""

    def __init__(self):
        super().__init__()
        self.net = HalfResNet()

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2) / 255).permute(0, 2, 3, 1) * 255


def export(model, example, path, axes):
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        dynamo=False,  # the torch.export-based exporter needs onnxscript
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": axes, "y": axes},
    )
    return path


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("onnx")
    with pytest.warns(DeprecationWarning):  # the legacy exporter warns; keep the log clean
        nchw = export(HalfResNet(), torch.rand(1, 3, 16, 16), root / "halfres.onnx", {0: "n", 2: "h", 3: "w"})
        nhwc = export(ByteNHWC(), torch.rand(1, 16, 16, 3) * 255, root / "byte_nhwc.onnx", {0: "n", 1: "h", 2: "w"})
    return nchw, nhwc


def test_onnx_teacher_pads_and_crops(onnx_models):
    path, _ = onnx_models
    teacher = make_teacher(f"onnx:{path}")
    assert isinstance(teacher, OnnxTeacher)
    assert teacher.spec == TeacherSpec()
    assert teacher.name == "onnx:halfres:" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    x = torch.rand(2, 3, 37, 45)
    with torch.no_grad():
        expected = HalfResNet()(F.pad(x, (0, 3, 0, 3), mode="reflect"))[..., :37, :45].clamp(0, 1)
    y = teacher(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)


def test_onnx_teacher_nhwc_and_value_range(onnx_models):
    _, path = onnx_models
    assert OnnxTeacher(path).spec.layout == "nhwc"  # inferred from the input shape (n, h, w, 3)
    teacher = OnnxTeacher(path, TeacherSpec(multiple=2, layout="nhwc", value_range=(0.0, 255.0)))
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        expected = HalfResNet()(F.pad(x, (0, 0, 0, 1), mode="reflect"))[..., :21, :30].clamp(0, 1)
    torch.testing.assert_close(teacher(x), expected, rtol=0, atol=1e-5)


def test_onnx_teacher_reads_its_spec_from_the_file(onnx_models, tmp_path):
    import onnx

    model = onnx.load(str(onnx_models[1]))
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, json.dumps({"multiple": 2, "layout": "nhwc", "value_range": [0, 255]})
    path = tmp_path / "described.onnx"
    onnx.save(model, str(path))
    teacher = make_teacher(f"onnx:{path}")
    assert teacher.spec == TeacherSpec(multiple=2, layout="nhwc", value_range=(0.0, 255.0))
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        expected = HalfResNet()(F.pad(x, (0, 0, 0, 1), mode="reflect"))[..., :21, :30].clamp(0, 1)
    torch.testing.assert_close(teacher(x), expected, rtol=0, atol=1e-5)
    # an explicit spec still wins over the stored one
    assert OnnxTeacher(path, TeacherSpec(multiple=4, layout="nhwc")).spec.multiple == 4


def test_a_bad_stored_spec_is_a_teacher_error(onnx_models, tmp_path):
    import onnx

    model = onnx.load(str(onnx_models[1]))
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, "{not json"
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))
    with pytest.raises(TeacherError, match="teacher spec"):
        OnnxTeacher(path)


def test_onnx_teacher_without_onnxruntime(onnx_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(TeacherError, match=r'pip install "livesharp\[onnx\]"'):
        OnnxTeacher(onnx_models[0])


def test_teacher_spec_validation():
    with pytest.raises(TeacherError, match="layout"):
        TeacherSpec(layout="chw")
    with pytest.raises(TeacherError, match="value_range"):
        TeacherSpec(value_range=(1.0, 0.0))


def test_cache_miss_then_hit(tmp_path):
    cache = TeacherCache(tmp_path)
    key = cache.key("restormer:0123456789ab", "a.mp4|100|1700000000", (8, 16, 32, 24))
    image = torch.rand(3, 32, 24)
    calls = []

    def compute():
        calls.append(1)
        return image[None]

    assert cache.get(key) is None
    first = cache.get_or_compute(key, compute)
    second = cache.get_or_compute(key, compute)
    assert len(calls) == 1
    assert cache.path(key) == tmp_path / key[:2] / f"{key}.pt" and cache.path(key).is_file()
    assert second.dtype == torch.float32 and second.shape == (3, 32, 24)
    assert torch.equal(first, second)
    assert (second - image).abs().max() <= 0.5 / 255 + 1e-6


def test_cache_keys():
    key = TeacherCache.key
    base = key("t", "src", (0, 0, 64, 64))
    assert len(base) == 64 and int(base, 16) >= 0
    assert base == key("t", "src", tuple(np.array([0, 0, 64, 64])))
    # Stable across runs and versions: a changed canonical form would orphan every cache.
    assert base == hashlib.sha256(b'["livesharp-teacher-cache-v1","t","src",[0,0,64,64]]').hexdigest()
    others = {key("t", "src", (0, 8, 64, 64)), key("t", "src", (0, 0, 64, 32)), key("t", "src", None), key("u", "src", (0, 0, 64, 64)), key("t", "src2", (0, 0, 64, 64))}
    assert base not in others and len(others) == 5


def test_cache_survives_a_killed_writer(tmp_path, monkeypatch):
    cache = TeacherCache(tmp_path)
    key = cache.key("t", "src", None)
    cache.put(key, torch.rand(3, 16, 16))
    whole = cache.path(key).read_bytes()
    # What a kill leaves behind: a stray temp file, and (from a non-atomic writer or a bad
    # disk) a truncated entry.
    (cache.path(key).parent / f".{key[:8]}-stray.tmp").write_bytes(whole[:100])
    cache.path(key).write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match="dropping damaged entry"):
        assert cache.get(key) is None
    assert not cache.path(key).exists()

    # A kill between writing and renaming: no entry appears, and no temp file is left.
    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr("train.teacher_cache.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put(key, torch.rand(3, 16, 16))
    monkeypatch.undo()
    assert cache.get(key) is None
    assert [p.name for p in cache.path(key).parent.glob(".*")] == [f".{key[:8]}-stray.tmp"]  # only the stray one

    image = cache.get_or_compute(key, lambda: torch.full((3, 16, 16), 0.25))
    assert torch.equal(cache.get(key), image)


def test_cache_rejects_foreign_entry(tmp_path):
    cache = TeacherCache(tmp_path)
    key = cache.key("t", "src", None)
    cache.path(key).parent.mkdir(parents=True)
    torch.save(torch.rand(4, 8, 8), cache.path(key))  # loads fine, but is not an image we wrote
    with pytest.warns(UserWarning):
        assert cache.get(key) is None
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        cache.put(key, torch.rand(1, 8, 8))
