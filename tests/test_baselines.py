"""The compared systems' networks (issue 12): SPADE, CLADE, CLADE-ICPE, pix2pixHD, GroupDNet, SEAN + GroupDNet,
SEAN + StarGAN-v2."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import facestyle.nn.sean as sean_module
import facestyle.nn.spade as spade_module
from facestyle.data.synthetic import SyntheticFaces
from facestyle.errors import InputError
from facestyle.nn.clade import CLADE_PRESETS, CLADENet, connected_components, positional_map
from facestyle.nn.groupdnet import (
    GROUPDNET_PRESETS,
    SEAN_GROUPDNET_PRESETS,
    GroupDNet,
    GroupDNetConfig,
    SEANGroupDNet,
    class_crops,
)
from facestyle.nn.mapping import MappingConfig, MappingNetwork
from facestyle.nn.pix2pixhd import PIX2PIXHD_PRESETS, Pix2PixHDConfig, Pix2PixHDNet
from facestyle.nn.sean_stargan import SEAN_STARGAN_PRESETS, SEANStarGAN
from facestyle.nn.spade import SPADE_PRESETS, SPADEConfig, SPADENet
from facestyle.nn.synthesis import RANDOM_GLOBAL, RANDOM_REGIONAL, RECONSTRUCTION, TASKS, TRANSFER

R = 19  # CelebAMask-HQ, the synthetic faces' label set
TINY = {
    "spade": lambda: SPADENet(SPADE_PRESETS["tiny"]),
    "clade": lambda: CLADENet(CLADE_PRESETS["tiny"]),
    "clade-icpe": lambda: CLADENet(CLADE_PRESETS["tiny-icpe"]),
    "pix2pixhd": lambda: Pix2PixHDNet(PIX2PIXHD_PRESETS["tiny"]),
    "groupdnet": lambda: GroupDNet(GROUPDNET_PRESETS["tiny"]),
    "sean-groupdnet": lambda: SEANGroupDNet(SEAN_GROUPDNET_PRESETS["tiny"]),
    "sean-stargan": lambda: SEANStarGAN(SEAN_STARGAN_PRESETS["tiny"]),
}


def _faces(n: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    faces = SyntheticFaces(n, size, seed=5)
    items = [faces[i] for i in range(n)]
    return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])


def _build(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return TINY[arch]()


@pytest.mark.parametrize("arch", TINY)
def test_shapes_and_interface(arch):
    net = _build(arch).eval()
    images, labels = _faces()
    assert net.tasks <= set(TASKS) and RECONSTRUCTION in net.tasks
    codes, present = net.encode(images, labels)
    assert present.shape == (2, R) and present.dtype == torch.bool
    in_labels = [bool((labels[0] == c).any()) for c in range(R)]
    if arch == "sean-stargan":  # SEAN pools at its encoder's resolution: a class of a few pixels may vanish there
        assert all(p <= q for p, q in zip(present[0].tolist(), in_labels)) and present[0].sum() >= sum(in_labels) - 2
    else:
        assert present[0].tolist() == in_labels
    if net.code_kind == "global":
        assert codes.shape == (2, net.config.z_dim)
    else:
        assert codes.shape[:2] == (2, R)
    out = net.decode(labels, codes)
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    rec = net.reconstruct(images, labels)
    assert rec.image.shape == out.shape and rec.kl.dim() == 0
    torch.testing.assert_close(rec.image, out)  # eval: the mean code
    if RANDOM_GLOBAL in net.tasks or RANDOM_REGIONAL in net.tasks:
        random = net.sample_codes(2, torch.Generator().manual_seed(0))
        assert random.shape == codes.shape
        assert not torch.allclose(net.decode(labels, random), out, atol=1e-4)
    else:
        assert not hasattr(net, "sample_codes")
    assert (TRANSFER in net.tasks) == hasattr(net, "transfer")


@pytest.mark.parametrize("arch", ["pix2pixhd", "groupdnet", "sean-groupdnet", "sean-stargan"])
def test_transfer_moves_only_the_chosen_classes(arch):
    net = _build(arch).eval()
    images, labels = _faces()
    target, reference = (images[:1], labels[:1]), (images[1:], labels[1:])
    none = torch.zeros(R, dtype=torch.bool)
    own = net.decode(labels[:1], net.encode(*target)[0])
    torch.testing.assert_close(net.transfer(*target, *reference, none), own)
    codes_t, p_t = net.encode(*target)
    codes_r, p_r = net.encode(*reference)
    skin = torch.zeros(R, dtype=torch.bool)
    skin[1] = True
    assert p_t[0, 1] and p_r[0, 1]
    mixed = net.compose(codes_t, p_t, codes_r, p_r, skin)
    torch.testing.assert_close(mixed[:, 1], codes_r[:, 1])
    torch.testing.assert_close(mixed[:, 2:], codes_t[:, 2:])


@pytest.mark.parametrize("arch", TINY)
def test_training_steps_lower_the_reconstruction_loss(arch):
    """A few Adam steps on a fixed batch of synthetic faces lower the L1 reconstruction error, and L1 plus
    0.05 KL per sample for the VAEs (the KL alone may rise as the codes start to carry the images)."""
    net = _build(arch)
    images, labels = _faces()

    def terms(sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        rec = net.reconstruct(images, labels, sample=sample)
        return F.l1_loss(rec.image, images), 0.05 * rec.kl / images.shape[0]

    def measured() -> tuple[float, float]:
        net.eval()
        with torch.no_grad():
            l1, kl = terms(sample=False)
        net.train()
        return l1.item(), l1.item() + kl.item()

    l1_before, total_before = measured()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.5, 0.999))
    for _ in range(10):
        opt.zero_grad()
        sum(terms(sample=True)).backward()
        opt.step()
    l1_after, total_after = measured()
    assert l1_after < 0.9 * l1_before and total_after < total_before, (l1_before, l1_after, total_before, total_after)


@pytest.mark.parametrize("arch", TINY)
def test_save_and_load(arch, tmp_path):
    net = _build(arch, seed=1).eval()
    images, labels = _faces()
    net.save_pretrained(tmp_path / arch)
    loaded = type(net).from_pretrained(tmp_path / arch)
    assert loaded.config == net.config
    torch.testing.assert_close(loaded(images, labels), net(images, labels))


# --------------------------------------------------------------------------------------------- parameter counts

def _count(build, monkeypatch) -> int:
    """Parameters of a network built on the meta device (nothing allocated). Spectral norm holds no
    parameters (test_spectral_norm_adds_no_parameters); its power iteration is slow on meta, so it is off."""
    monkeypatch.setattr(spade_module, "spectral_norm", lambda m: m)
    monkeypatch.setattr(sean_module, "spectral_norm", lambda m: m)
    with torch.device("meta"):
        parts = build()
    return [sum(p.numel() for p in part.parameters()) for part in parts]


def test_spectral_norm_adds_no_parameters(monkeypatch):
    with_sn = sum(p.numel() for p in _build("groupdnet").parameters())
    assert _count(lambda: [TINY["groupdnet"]()], monkeypatch) == [with_sn]


def _vae(net):
    return [net.generator, torch.nn.ModuleList([net.encoder, net.fc_mu, net.fc_var])]


# baselines.md section 11 (computed from the official modules), millions
SECTION_11 = {
    "spade-19": (lambda: _vae(SPADENet(SPADE_PRESETS["paper"])), [109.21, 10.46]),
    "spade-11": (lambda: _vae(SPADENet(replace(SPADE_PRESETS["paper"], label_set="lapa"))), [109.04, 10.46]),
    "clade-19": (lambda: _vae(CLADENet(CLADE_PRESETS["paper"])), [83.99, 10.46]),
    "clade-11": (lambda: _vae(CLADENet(replace(CLADE_PRESETS["paper"], label_set="lapa"))), [83.81, 10.46]),
    "clade-icpe-19": (lambda: _vae(CLADENet(CLADE_PRESETS["paper-icpe"])), [83.99, 10.46]),
    "clade-icpe-11": (lambda: _vae(CLADENet(replace(CLADE_PRESETS["paper-icpe"], label_set="lapa"))),
                      [83.81, 10.46]),
    "pix2pixhd-19": (lambda: (lambda n: [n.generator, n.encoder])(Pix2PixHDNet(PIX2PIXHD_PRESETS["paper"])),
                     [182.50, 0.79]),
    "pix2pixhd-11": (lambda: (lambda n: [n.generator, n.encoder])(Pix2PixHDNet(Pix2PixHDConfig(label_set="lapa"))),
                     [182.48, 0.79]),
    "groupdnet-deepfashion": (lambda: (lambda n: [n.generator, n.encoder])(GroupDNet(GROUPDNET_PRESETS["deepfashion"])),
                              [96.32, 12.84]),
    # SEAN's generator without its Zencoder: 266.91 M - 1.57 M
    "sean-groupdnet-generator": (lambda: [SEANGroupDNet(SEAN_GROUPDNET_PRESETS["paper"]).generator], [265.34]),
    # SEAN's generator and its Zencoder (266.91 M together)
    "sean-stargan-sean": (lambda: (lambda n: [n.generator, n.encoder])(SEANStarGAN(SEAN_STARGAN_PRESETS["paper"])),
                          [265.34, 1.57]),
    # StarGAN-v2's own mapping network (latent 16, style 64, two domains): our per-class heads as its domains
    "stargan-mapping": (lambda: [MappingNetwork(MappingConfig(classes=(0, 1), style_dim=64))], [2.44]),
}


@pytest.mark.parametrize("name", SECTION_11)
def test_paper_parameter_counts_match_section_11(name, monkeypatch):
    build, expected = SECTION_11[name]
    counts = _count(build, monkeypatch)
    for count, millions in zip(counts, expected, strict=True):
        assert abs(count / 1e6 - millions) <= 0.02 * millions, (name, count, millions)


# Face configurations that section 11 does not list: pinned at the counts the README states
PINNED = {
    "groupdnet-19": (lambda: (lambda n: [n.generator, n.encoder])(GroupDNet(GROUPDNET_PRESETS["paper"])),
                     [41_076_883, 5_478_260]),
    "groupdnet-11": (lambda: (lambda n: [n.generator, n.encoder])(GroupDNet(GROUPDNET_PRESETS["paper-lapa"])),
                     [67_069_029, 9_197_688]),
    "sean-groupdnet-19": (lambda: (lambda n: [n.encoder, n.lift])(SEANGroupDNet(SEAN_GROUPDNET_PRESETS["paper"])),
                          [5_478_260, 1_254_912]),
    # StarGAN-v2's mapping network with one head per class of the group, to D = 512: skin + nose, hair
    "sean-stargan-19-mapping": (lambda: (lambda n: [n.mapping["skin"], n.mapping["hair"]])(
        SEANStarGAN(SEAN_STARGAN_PRESETS["paper"])), [2_897_920, 1_847_296]),
}


@pytest.mark.parametrize("name", PINNED)
def test_face_parameter_counts_are_pinned(name, monkeypatch):
    build, expected = PINNED[name]
    assert _count(build, monkeypatch) == expected


# --------------------------------------------------------------------------------------------- ICPE

def test_positional_map_of_a_flipped_label_map_is_the_flipped_map():
    """Offsets are recomputed from the label map given, so a flip mirrors them and negates the column
    offset (CLADE's precomputed maps were flipped along rows and kept the sign)."""
    _, labels = _faces(3, 64)
    dist = positional_map(labels)
    flipped = positional_map(labels.flip(-1))
    expected = dist.flip(-1) * torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(flipped, expected, rtol=0, atol=0)
    assert dist.abs().max() <= 1
    assert (dist.abs().amax(dim=(2, 3)) > 0.99).all()  # every image has components reaching +-1
    assert (dist[:, 0][labels == 0] == 0).all() and (dist[:, 1][labels == 0] == 0).all()


def test_positional_map_by_hand():
    """Two separate 1 x 3 bars of class 2 (8-connectivity keeps them apart): column offsets -1, 0, 1 each."""
    labels = torch.zeros(1, 5, 7, dtype=torch.long)
    labels[0, 1, 0:3] = 2
    labels[0, 3, 4:7] = 2
    dist = positional_map(labels)
    for row, cols in ((1, slice(0, 3)), (3, slice(4, 7))):
        torch.testing.assert_close(dist[0, 1, row, cols], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4, rtol=0)
        assert dist[0, 0, row, cols].abs().max() == 0
    comp = connected_components(labels)
    assert comp[0, 1, 0] != comp[0, 3, 4] and comp[0, 1, 0] == comp[0, 1, 2]
    diagonal = torch.zeros(1, 3, 3, dtype=torch.long)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = 1  # touching at a corner: one component
    assert connected_components(diagonal)[0, 0, 0] == connected_components(diagonal)[0, 1, 1]


def test_icpe_changes_clade_only_through_the_map():
    clade, icpe = _build("clade"), _build("clade-icpe")
    assert sum(p.numel() for p in icpe.parameters()) - sum(p.numel() for p in clade.parameters()) == 18 * 6


# --------------------------------------------------------------------------------------------- GroupDNet

def test_class_crops():
    images, labels = _faces(2, 64)
    crops = class_crops(images, labels, 20, 32).view(2, 20, 3, 32, 32)
    for b, c in ((0, 1), (1, 13)):
        ys, xs = (labels[b] == c).nonzero(as_tuple=True)
        box = (images[b] * (labels[b] == c))[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        torch.testing.assert_close(crops[b, c], F.interpolate(box[None], size=(32, 32), mode="nearest")[0])
    assert crops[:, 19].abs().max() == 0  # the padding class is empty


def test_groupdnet_codes_are_isolated_per_class():
    """A class's code depends only on its own pixels (grouped convolutions on per-class crops)."""
    net = _build("groupdnet").eval()
    images, labels = _faces(1, 64)
    changed = torch.where(labels[:, None] == 13, -images, images)  # repaint class 13 only
    a, b = net.encode(images, labels)[0], net.encode(changed, labels)[0]
    assert not torch.allclose(a[:, 13], b[:, 13])
    keep = torch.arange(R) != 13
    torch.testing.assert_close(a[:, keep], b[:, keep])


def test_group_counts_must_divide_the_widths():
    with pytest.raises(InputError, match="not divisible"):
        GroupDNetConfig(group_classes=19, block_groups=(19, 19, 10, 10, 5, 5, 1), fc_groups=19)
    with pytest.raises(InputError, match="image_size"):
        SPADEConfig(image_size=100)


# --------------------------------------------------------------------------------------------- SEAN + StarGAN-v2

def test_sean_stargan_draws_only_its_groups_classes():
    """Mapped codes replace the groups' classes (skin + nose, hair) where the image has them, nothing else; a
    seed gives the same codes; each group has its own z."""
    net = _build("sean-stargan").eval()
    images, labels = _faces()
    codes, present = net.encode(images, labels)
    groups = {1, 2, 13}  # skin, nose, hair in CelebAMask-HQ
    assert set(net.sample_classes) == groups
    drawn = net.sample_codes(2, torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn, net.sample_codes(2, torch.Generator().manual_seed(3)))
    others = [c for c in range(R) if c not in groups]
    assert not drawn[:, others].any() and drawn[:, sorted(groups)].abs().sum(-1).gt(0).all()
    mixed = net.mapped_into(codes, present, torch.Generator().manual_seed(3))
    taken = torch.zeros(2, R, dtype=torch.bool)
    taken[:, sorted(groups)] = present[:, sorted(groups)]
    torch.testing.assert_close(mixed[~taken], codes[~taken])
    torch.testing.assert_close(mixed[taken], drawn[taken])


def test_sean_stargan_config_checks():
    with pytest.raises(InputError, match="shares classes"):
        replace(SEAN_STARGAN_PRESETS["tiny"], groups=("skin", "nose"))
    with pytest.raises(InputError, match="unknown region 'beard'"):
        replace(SEAN_STARGAN_PRESETS["tiny"], groups=("beard",))
