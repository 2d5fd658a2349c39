"""Tests for livesharp/model.py: the student network and its checkpoints."""

from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from livesharp.model import VARIANTS, ChannelNorm, LayerNorm2d, ModelError, Student, StudentConfig, load_student, save_student


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("h, w", [(37, 45), (1, 1), (5, 64), (48, 64)])
def test_any_size_comes_back_the_same_size_and_finite(variant, h, w, random_student):
    net = random_student(variant)
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_zero_last_layer_is_the_identity(variant, identity_student, random_student):
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(identity_student(variant)(x), x)
        # ...and the identity is not an accident of the architecture: other weights change the picture.
        assert (random_student(variant)(x) - x).abs().max() > 1e-2


@pytest.mark.parametrize("variant", ["tiny", "tiny-detail", "tiny-detail2"])
def test_a_batch_gives_the_same_result_as_one_frame_at_a_time(random_student, variant):
    """No frame's averages (the zero-mean residual, the detail path's per-frame gain) reach another's."""
    net = random_student(variant)
    x = torch.rand(3, 3, 37, 45, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        batched = net(x)
        one_by_one = torch.cat([net(x[i : i + 1]) for i in range(3)])
    # the detail path's gain is scaled by 10, and float rounding with it; a leak would be grey levels (4e-3)
    torch.testing.assert_close(batched, one_by_one, atol=1e-5 if variant == "tiny" else 5e-5, rtol=1e-5)


def test_a_zero_mean_student_keeps_each_frames_brightness(random_student):
    """conv32 removes its residual's mean, per frame and colour: it can sharpen, not darken."""
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(4))
    net = random_student("conv32")
    plain = Student(replace(net.cfg, zero_mean=False)).eval()
    plain.load_state_dict(net.state_dict())  # the same weights without the constraint
    with torch.no_grad():
        y, y_plain = net(x), plain(x)
    assert net.cfg.zero_mean
    torch.testing.assert_close(y.mean((-2, -1)), x.mean((-2, -1)), atol=1e-5, rtol=0)
    assert (y_plain.mean((-2, -1)) - x.mean((-2, -1))).abs().max() > 1e-3  # these weights would shift it
    torch.testing.assert_close(y - y.mean((-2, -1), keepdim=True), y_plain - y_plain.mean((-2, -1), keepdim=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", ["tiny", "small", "conv32", "tiny-detail", "tiny-detail2"])
def test_the_fused_student_computes_the_same_and_leaves_the_original_alone(variant, random_student):
    """Student.fused (what graphs are exported from and torch runs) folds the norms' scale and
    shift and the block scales into convolutions, and splits each gate into two: the same
    function, within float rounding, for random weights in every parameter."""
    net = random_student(variant)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = net.fused()
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y, y_fused = net(x), fused(x)
    assert (y - x).abs().mean() > 0.05  # these weights change the picture
    torch.testing.assert_close(y_fused, y, atol=2e-5, rtol=1e-5)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    if net.cfg.block == "naf":
        names = [n for n, _ in fused.named_parameters()]
        assert not any(isinstance(m, LayerNorm2d) for m in fused.modules())
        assert not any(n.endswith((".beta", ".gamma")) for n in names)


@pytest.mark.parametrize("channels", [8, 32, 64])
def test_channel_norm_normalises_by_convolution_up_to_32_channels(channels):
    """ChannelNorm (the fused blocks' norm) is LayerNorm2d without its scale and shift, by two
    1x1 convolutions up to 32 channels and by reductions beyond, on features far from zero mean."""
    x = torch.randn(2, channels, 9, 11, generator=torch.Generator().manual_seed(1)) * 3 + 5
    norm = ChannelNorm(channels, 1e-6)
    with torch.no_grad():
        torch.testing.assert_close(norm(x), LayerNorm2d(channels)(x), atol=2e-5, rtol=1e-5)
    assert (norm.centre is not None) == (channels <= 32)


def test_mismatched_levels_are_a_model_error():
    with pytest.raises(ModelError, match="same number of levels"):
        StudentConfig(enc_blocks=(1, 1), dec_blocks=(1, 1, 1))


def test_checkpoint_round_trip(tmp_path):
    cfg = StudentConfig(unshuffle=2, width=8, enc_blocks=(1, 2), middle_blocks=1, dec_blocks=(1, 1), edge_kernel=3)
    net = Student(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path / "student.pt"
    save_student(net, path, step=7)

    raw = torch.load(path, weights_only=True)
    # first_width at 0 is left out: checkpoints (and graph digests) from before it stay as they were
    assert raw["step"] == 7 and raw["model_args"] == {k: v for k, v in asdict(cfg).items() if k != "first_width"}
    assert [p.name for p in tmp_path.iterdir()] == ["student.pt"]  # no temp file left

    loaded = load_student(path)
    assert loaded.cfg == cfg  # tuples restored, so the frozen config compares equal
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), net(x))
    save_student(Student(replace(cfg, first_width=16)), path)
    assert torch.load(path, weights_only=True)["model_args"]["first_width"] == 16 and load_student(path).intro.out_channels == 16


def test_a_name_loads_the_shipped_weights_as_everywhere_else(tmp_path, monkeypatch):
    shipped = torch.load(Path(__file__).parents[2] / "livesharp" / "weights" / "livesharp-tiny.pt", weights_only=True)["model"]
    tiny = load_student("tiny").state_dict()
    assert all(torch.equal(tiny[k], v) for k, v in shipped.items())  # not a fresh initialisation
    monkeypatch.setenv("LIVESHARP_MODELS", str(tmp_path))  # a variant with no weights installed: said, not random
    with pytest.raises(ModelError, match="no trained weights for model 'small'.*--variant small"):
        load_student("small")


def _checkpoint(tmp_path: Path, **changes) -> Path:
    net = Student(VARIANTS["tiny"])
    ckpt = {"model": net.state_dict(), "model_args": asdict(net.cfg), **changes}
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    return path


def test_a_checkpoint_missing_a_weight_is_a_model_error(tmp_path):
    state = Student(VARIANTS["tiny"]).state_dict()
    del state["ending.bias"]
    with pytest.raises(ModelError, match="does not match"):
        load_student(_checkpoint(tmp_path, model=state))


def test_a_checkpoint_with_an_extra_weight_is_a_model_error(tmp_path):
    state = Student(VARIANTS["tiny"]).state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match="does not match"):
        load_student(_checkpoint(tmp_path, model=state))


def test_a_checkpoint_whose_model_args_disagree_is_a_model_error(tmp_path):
    args = asdict(VARIANTS["small"])  # weights are tiny's
    with pytest.raises(ModelError, match="does not match"):
        load_student(_checkpoint(tmp_path, model_args=args))


def test_a_checkpoint_with_an_unknown_model_arg_is_a_model_error(tmp_path):
    args = {**asdict(VARIANTS["tiny"]), "depth": 3}
    with pytest.raises(ModelError, match="does not match"):
        load_student(_checkpoint(tmp_path, model_args=args))


def test_a_state_dict_without_model_args_is_a_model_error(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(Student(VARIANTS["tiny"]).state_dict(), path)
    with pytest.raises(ModelError, match="model_args"):
        load_student(path)


def test_a_garbage_file_is_a_model_error(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint\n" * 10)
    with pytest.raises(ModelError, match="not a readable livesharp checkpoint") as err:
        load_student(path)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)


def test_a_message_too_long_for_a_line_is_cut_at_a_word():
    from livesharp.model import _unreadable

    line = _unreadable(Path("x.pt"), RuntimeError("truncated " * 40))
    assert line.endswith("truncated ...)") and len(line) < 240


def test_an_unknown_name_is_a_model_error():
    with pytest.raises(ModelError, match="neither a file nor one of tiny, small"):
        load_student("enormous")


def _touch(path: str) -> None:
    Path(path).touch()


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return _touch, (str(self.marker),)


def test_loading_never_runs_code_from_the_file(tmp_path):
    marker = tmp_path / "code-ran"
    net = Student(VARIANTS["tiny"])
    path = tmp_path / "evil.pt"
    torch.save({"model": net.state_dict(), "model_args": asdict(net.cfg), "x": _RunsCodeWhenUnpickled(marker)}, path)

    with pytest.raises(ModelError, match="not a readable livesharp checkpoint") as err:
        load_student(path)
    assert not marker.exists()
    # One line naming what the file holds; none of torch's advice to load it unsafely.
    assert "_touch" in str(err.value) and "weights_only" not in str(err.value)
    assert "\n" not in str(err.value)

    # The file really is dangerous: a plain pickle load runs the payload.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_checkpoint_from_before_block_kinds_loads_as_nafblocks(tmp_path):
    """v1's shipped tiny was saved before StudentConfig had ``block``: it must still load."""
    net = Student(VARIANTS["tiny"])
    args = asdict(net.cfg)
    del args["block"]
    torch.save({"model": net.state_dict(), "model_args": args}, tmp_path / "old.pt")
    loaded = load_student(tmp_path / "old.pt")
    assert loaded.cfg.block == "naf" and loaded.cfg == net.cfg


def test_conv_blocks_are_dense_and_an_unknown_block_is_a_model_error():
    net = Student(VARIANTS["conv32"])
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(m.groups == 1 for m in convs)  # dense, not depthwise: what CPU runtimes run fastest
    with pytest.raises(ModelError, match="block 'dw'"):
        StudentConfig(block="dw")


def _gaussian_highpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x minus its Gaussian blur at full resolution (kernel radius 4, normalised), per channel."""
    span = torch.arange(-4, 5).float()
    g = torch.exp(-(span[:, None] ** 2 + span[None] ** 2) / (2 * sigma**2))
    g = (g / g.sum())[None, None].repeat(x.shape[1], 1, 1, 1)
    return x - torch.nn.functional.conv2d(x, g, padding=4, groups=x.shape[1])


def test_the_detail_path_is_an_unsharp_mask_of_luma_whose_amount_the_network_sets(identity_student):
    """A student whose own residual is zero and whose detail gain is a constant a sharpens every
    colour by a times the luma's full-resolution high-pass: an unsharp mask of sigma 1.5 px (away
    from the frame's edges, where the mask's reach is cut short)."""
    net = identity_student("tiny-detail")
    net.cfg = replace(net.cfg, zero_mean=False)  # the mean the constraint removes is not the mask's
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(net(x), x)  # the gain starts at zero: the path adds nothing
        net.detail.gain.bias.fill_(0.8 / net.detail.GAIN_SCALE)
        y = net(x)
    want = x + 0.8 * _gaussian_highpass(x.mean(1, keepdim=True), 1.5)
    torch.testing.assert_close(y[..., 8:-8, 8:-8], want[..., 8:-8, 8:-8], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 0] - x[:, 0], y[:, 2] - x[:, 2], atol=1e-6, rtol=0)  # luma only: every colour alike


def test_with_detail_adds_the_path_without_changing_the_function(random_student):
    net = random_student("tiny", seed=4)
    detailed = net.with_detail().eval()
    x = torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(detailed(x), net(x))
    assert detailed.cfg == VARIANTS["tiny-detail"]
    with pytest.raises(ModelError, match="already has a detail path of 1 band"):
        detailed.with_detail()
    with pytest.raises(ModelError, match=r"detail 3: choose 0 \(none\), 1 or 2"):
        Student(replace(VARIANTS["tiny"], detail=3))


def test_a_grown_student_computes_what_it_did_until_trained(random_student):
    """tiny-detail grown into small, or given 3x3 end convolutions, keeps its function (new
    blocks start as the identity, a wider kernel is zero around the old one) and its weights;
    training then reaches the new blocks. Growing the other way, or across widths, is a model
    error."""
    net = random_student("tiny-detail", seed=6)
    big = net.grown(VARIANTS["small"]).eval()
    wide = net.grown(replace(net.cfg, edge_kernel=3)).eval()  # each patch's output also sees its neighbours
    assert big.cfg == VARIANTS["small"]
    x = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(big(x), net(x))
        assert torch.equal(wide(x), net(x))
    assert torch.equal(big.middle[3].pw1.weight, net.middle[3].pw1.weight)
    loss = (big.train()(x) - x.flip(-1)).abs().mean()
    loss.backward()
    assert big.middle[11].beta.grad.abs().sum() > 0  # a new block learns
    with pytest.raises(ModelError, match=r"grows only into .*\(not at least its blocks at every level\)"):
        big.grown(VARIANTS["tiny-detail"])
    with pytest.raises(ModelError, match=r"grows only into .*\(not the same levels and widths below the first[;)]"):
        net.grown(replace(VARIANTS["small"], width=24))
    with pytest.raises(ModelError, match=r"grows only into .*not end convolutions as wide or 2, 4, \.\.\. wider\)"):
        net.grown(replace(net.cfg, edge_kernel=2))  # a kernel of even width has no centre for the old one
    with pytest.raises(ModelError, match=r"grows only into .*\(not the same levels and widths below the first[;)]"):
        net.grown(replace(net.cfg, enc_blocks=(1, 1, 1, 4), dec_blocks=(4, 1, 1, 1)))  # a new level's resampling starts random


def test_a_first_level_grown_twice_as_wide_computes_what_it_did_and_its_copies_part(random_student, tmp_path):
    """Each first-level channel held twice (Net2Net's widening) keeps the function, blocks and
    all, through save and load; training then moves the two copies of a channel apart, or the
    wider level would only ever hold the narrow one's features. Other factors are a model error."""
    net = random_student("tiny-detail", seed=7)
    wide = net.grown(replace(net.cfg, first_width=32, enc_blocks=(2, 1, 1), edge_kernel=3)).eval()
    assert wide.intro.out_channels == 32 and wide.downs[1].in_channels == 32  # the levels below are as they were
    save_student(wide, tmp_path / "wide.pt")
    wide = load_student(tmp_path / "wide.pt").eval()
    x = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out = net(x)  # random weights make residuals in the hundreds: equal up to float rounding
        torch.testing.assert_close(wide(x), out, rtol=0, atol=1e-6 * out.abs().max().item())
    (wide.train()(x) - x.flip(-1)).abs().mean().backward()
    for grad in (wide.intro.weight.grad, wide.encoders[0][0].pw1.weight.grad):
        assert (grad[:16] - grad[16:32]).abs().max() > 1e-3 * grad.abs().max()
    with pytest.raises(ModelError, match=r"cannot become .*\(not a first level as wide or twice as wide\)"):
        net.grown(replace(net.cfg, first_width=48))


def test_a_second_band_keeps_the_trained_band_and_adds_one_at_zero_gain(random_student):
    """A trained one-band student given a second band computes what it did, its first band's
    weights untouched; the second band, once gained, is an unsharp mask of sigma 2.5 px."""
    one = random_student("tiny-detail", seed=5)
    two = one.with_detail(2).eval()
    assert two.cfg == VARIANTS["tiny-detail2"]
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        torch.testing.assert_close(two(x), one(x), atol=1e-5, rtol=1e-6)  # the gains are summed in another order
        assert torch.equal(two.detail.highpass.weight[:16], one.detail.highpass.weight)
        two.detail.gain.bias[1] = 0.6 / two.detail.GAIN_SCALE
        two.cfg = replace(two.cfg, zero_mean=False)  # the mean the constraint removes is not the mask's
        one.cfg = replace(one.cfg, zero_mean=False)
        added = two(x) - one(x)
    want = 0.6 * _gaussian_highpass(x.mean(1, keepdim=True), 2.5)
    torch.testing.assert_close(added[..., 8:-8, 8:-8], want.expand_as(added)[..., 8:-8, 8:-8], atol=1e-5, rtol=0)


def test_two_bands_read_the_frames_blur_width_not_its_contrast(identity_student):
    """With two bands the per-frame amounts may follow how the detail's energy falls from the
    wide band to the narrow one: the same picture at half the contrast gets the same amounts
    (half the detail), and the same picture blurred more gets other amounts."""
    net = identity_student("tiny-detail2")
    net.cfg = replace(net.cfg, zero_mean=False)
    path = net.detail
    with torch.no_grad():
        first, last = path.energy_gain[0], path.energy_gain[-1]
        first.weight.zero_(), first.bias.zero_()
        first.weight[0, 0], first.bias[0] = 1.0, 10.0  # a hidden unit that is the slope between the bands (+10: above zero)
        last.weight[0, 0] = 0.01  # band 1's amount follows it
    g = torch.Generator().manual_seed(9)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 96, 128, generator=g), 3, 1, 1)  # some blur, some detail
    blurred = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    with torch.no_grad():
        added, added_low = net(x) - x, net(0.25 + 0.5 * x) - (0.25 + 0.5 * x)
        assert added.abs().mean() > 1e-3
        torch.testing.assert_close(added_low, 0.5 * added, atol=1e-5, rtol=0.01)  # the energies' floor is not scaled
        ratio = (net(blurred) - blurred).abs().mean() / _gaussian_highpass(blurred.mean(1, keepdim=True), 1.5).abs().mean()
        assert abs(ratio - added.abs().mean() / _gaussian_highpass(x.mean(1, keepdim=True), 1.5).abs().mean()) > 0.05


def test_the_detail_path_leaves_a_flat_frame_flat_up_to_its_edges(identity_student):
    """What lies beyond the frame is its edge continued, not black: a frame without detail gets
    none added, at the borders too (zero padding drew a line 60 grey levels bright there)."""
    net = identity_student("tiny-detail")
    x = torch.full((1, 3, 40, 72), 0.6)
    with torch.no_grad():
        net.detail.gain.bias.fill_(1.5 / net.detail.GAIN_SCALE)
        y = net(x)
    assert (y - x).abs().max() < 1e-5
