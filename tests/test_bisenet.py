"""face-parsing.PyTorch's BiSeNet as a parser backend: its layout (so 79999_iter.pth loads), the class remap,
``bisenet:PATH`` through the Editor and the command line, and one-line errors for a wrong file. The files
here are random-weight state dicts in the official layout, saved by torch.save as the original is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facestyle.cli import main
from facestyle.editor.editor import Editor
from facestyle.editor.parser import BiSeNetParser, load_parser
from facestyle.errors import InputError, WeightsError
from facestyle.labels import CELEBAMASK_HQ, LAPA
from facestyle.nn.bisenet import FACE_PARSING_CLASSES, BiSeNet, BiSeNetParserNet, class_remap, load_bisenet
from facestyle.weights import ENV_VAR, WEIGHT_FILES
from tests.helpers import drawn_face, tiny_checkpoint

DRIVE_URL = "https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812"  # face-parsing.PyTorch's README

# Keys and shapes of face-parsing.PyTorch's model.py (BiSeNet(n_classes=19)) and resnet.py.
OFFICIAL_SHAPES = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.layer1.1.conv2.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.running_var": (512,),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.weight": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_head16.bn.running_mean": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-weight state dict in the official layout (batch-norm statistics randomised too)."""
    torch.manual_seed(seed)
    net = BiSeNet(19)
    for name, buffer in net.named_buffers():
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 1.5)
    return net.state_dict()


def one_class_state(official_class: str) -> dict[str, torch.Tensor]:
    """Random weights whose main head scores one face-parsing.PyTorch class above all others everywhere:
    its classifier row is positive on the (ReLU, so non-negative) features, the other rows zero."""
    state = random_state(1)
    head = torch.zeros_like(state["conv_out.conv_out.weight"])
    head[FACE_PARSING_CLASSES.index(official_class)] = 1.0
    state["conv_out.conv_out.weight"] = head
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{"random": a random-weight file, "l_brow": one that labels everything face-parsing.PyTorch's l_brow}."""
    folder = tmp_path_factory.mktemp("bisenet")
    torch.save(random_state(), folder / "79999_iter.pth")
    torch.save(one_class_state("l_brow"), folder / "l_brow.pth")
    return {"random": folder / "79999_iter.pth", "l_brow": folder / "l_brow.pth"}


@pytest.fixture
def small(monkeypatch):
    """Parse at 128 x 128 instead of the official 512 (16 times less work; the layout is the same)."""
    monkeypatch.setattr(BiSeNetParser, "default_image_size", 128)


@pytest.fixture
def photo(tmp_path):
    image, _ = drawn_face(0, 64)
    wide = np.concatenate([image, image[:, :16]], axis=1)  # 80 x 64: not square, so a centred crop is parsed
    Image.fromarray(wide).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


# ------------------------------------------------------------------------------------------ network


def test_the_network_has_the_official_layout():
    net = BiSeNet(19).eval()
    state = net.state_dict()
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith(("sp.", "cp.resnet.fc")) for k in state), "no spatial path, no classifier"
    x = torch.randn(1, 3, 32, 48)
    main_head, out16, out32 = net.heads(x)
    assert main_head.shape == out16.shape == out32.shape == (1, 19, 32, 48)
    torch.testing.assert_close(net(x), main_head)


def test_the_remap_sends_each_class_to_the_project_class_of_its_name():
    remap = class_remap(CELEBAMASK_HQ.classes)
    assert sorted(remap) == list(range(CELEBAMASK_HQ.num_classes)), "a permutation of the 19 classes"
    for official, ours in enumerate(remap):
        assert CELEBAMASK_HQ.classes[ours] == FACE_PARSING_CLASSES[official]
    assert remap != list(range(19)), "the two orders differ: the remap is needed"
    lapa = class_remap(LAPA.classes)
    for official, ours in enumerate(lapa):
        name = FACE_PARSING_CLASSES[official]
        assert LAPA.classes[ours] == (name if name in LAPA.classes else "background")


def test_the_parser_network_normalises_like_test_py_and_renames_the_classes():
    torch.manual_seed(0)
    net = BiSeNet(19).eval()
    wrapper = BiSeNetParserNet(net, CELEBAMASK_HQ.classes, image_size=32)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    official = net(((x + 1) / 2 - mean) / std).argmax(1)
    out = wrapper(x)
    assert torch.equal(out.argmax(1), torch.tensor(class_remap(CELEBAMASK_HQ.classes))[official])
    lapa = BiSeNetParserNet(net, LAPA.classes, label_set="lapa", image_size=32)(x)
    assert lapa.shape == (2, LAPA.num_classes, 32, 32)
    torch.testing.assert_close(lapa.exp().sum(1), torch.ones(2, 32, 32))  # probabilities gathered, none lost


def test_loading_takes_a_dataparallel_prefix_and_files_without_num_batches_tracked():
    state = random_state()
    reference = load_bisenet("mem", state=state)
    edited = {f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    loaded = load_bisenet("mem", state=edited)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), reference(x))


# --------------------------------------------------------------------------- the Editor and the CLI


def test_the_editor_parses_with_bisenet_path(files, photo, tmp_path, small):
    editor = Editor.from_pretrained(tiny_checkpoint(tmp_path / "ckpt"), parser=f"bisenet:{files['random']}")
    assert isinstance(editor.parser, BiSeNetParser) and editor.parser.image_size == 128
    labels = editor.parse(str(photo))
    assert labels.shape == (64, 80) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < CELEBAMASK_HQ.num_classes
    assert editor.reconstruct(str(photo)).size == (80, 64)  # the label map left out: BiSeNet parses it

    editor.set_parser(f"bisenet:{files['l_brow']}")
    labels = editor.parse(str(photo))
    inside, outside = labels[:, 8:72], torch.cat([labels[:, :8], labels[:, 72:]], dim=1)
    assert (inside == CELEBAMASK_HQ.classes.index("l_brow")).all()  # face-parsing.PyTorch's 2 is our 6
    assert (outside == 0).all()  # outside the centred square: background


def test_bisenet_alone_finds_the_file_in_the_weights_folder(files, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(WeightsError) as info:
        load_parser("bisenet")
    assert "79999_iter.pth" in str(info.value) and DRIVE_URL in str(info.value)
    (tmp_path / "79999_iter.pth").symlink_to(files["random"])
    parser = load_parser("bisenet", "lapa")
    assert isinstance(parser, BiSeNetParser) and parser.label_set is LAPA
    assert parser.image_size == 512 and parser.path == tmp_path / "79999_iter.pth"  # test.py's size
    with pytest.raises(InputError, match="needs a path"):
        load_parser("bisenet:")


def test_the_parse_command_takes_bisenet_path(files, photo, tmp_path, capsys, small):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "parse", "--parser", f"bisenet:{files['l_brow']}", photo, "--out-dir", out)
    assert code == 0, err
    labels = np.asarray(Image.open(out / "photo.png"))
    assert labels.shape == (64, 80)
    assert set(np.unique(labels)) == {0, CELEBAMASK_HQ.classes.index("l_brow")}
    assert (out / "previews" / "photo.png").is_file()


def test_weights_lists_the_bisenet_file_and_where_it_is_published(tmp_path, capsys):
    assert WEIGHT_FILES["79999_iter.pth"].url == DRIVE_URL
    code, stdout, _ = run(capsys, "weights", "--weights-dir", tmp_path)
    assert code == 0
    line = next(i for i, text in enumerate(stdout.splitlines()) if "79999_iter.pth" in text)
    assert "missing" in stdout.splitlines()[line] and DRIVE_URL in stdout.splitlines()[line + 1]


class _Arbitrary:
    pass


@pytest.mark.parametrize("case", ["other network", "wrong shape", "not a weight file", "pickled object", "missing"])
def test_a_wrong_file_is_one_line_and_exit_2(case, photo, tmp_path, capsys):
    path = tmp_path / "bad.pth"
    if case == "other network":
        torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
        expected = "missing key 'cp.resnet.conv1.weight'"
    elif case == "wrong shape":
        torch.save({"cp.resnet.conv1.weight": torch.zeros(64, 3, 3, 3)}, path)
        expected = "has shape (64, 3, 3, 3), expected (64, 3, 7, 7)"
    elif case == "not a weight file":
        path.write_bytes(b"<html>Google Drive: virus scan warning</html>")
        expected = "cannot be read as a weight file"
    elif case == "pickled object":
        torch.save({"weight": torch.ones(1), "obj": _Arbitrary()}, path)
        expected = "never loaded"
    else:
        expected = "not found"
    code, _, err = run(capsys, "parse", "--parser", f"bisenet:{path}", photo, "--out-dir", tmp_path / "out")
    assert code == 2 and len(err) == 1, err
    assert expected in err[0] and str(path) in err[0]
    assert not (tmp_path / "out" / "photo.png").exists()
