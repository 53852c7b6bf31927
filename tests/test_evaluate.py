"""``facestyle evaluate`` (the paper's Tables 1-4) and ``facestyle bench-harmony`` with tiny models on small images."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facestyle.checkpoint import demo_dir
from facestyle.cli import main
from facestyle.config import get_preset
from facestyle.data.composites import BENCH_FIRST_INDEX as FIRST_INDEX
from facestyle.data.composites import ground_truth, light_difference, make_pair, render_pair
from facestyle.data.synthetic import SKIN_CLASSES, render, sample_face
from facestyle.errors import InputError
from facestyle.evaluation.bench_harmony import cut_and_paste, masked_errors
from facestyle.evaluation.evaluate import EvaluateOptions, evaluate
from facestyle.evaluation.labels_map import VOID, label_lookup, map_labels, unmapped_classes
from facestyle.evaluation.paper import PAPER_TABLE1, PAPER_TABLE3
from facestyle.io import load_image, load_labels, save_image, save_labels
from facestyle.labels import CELEBAMASK_HQ, LAPA
from facestyle.metrics import psnr, to_unit_range
from facestyle.model import FaceStyleNet
from facestyle.nn.harmony import HarmonyClassifier, HarmonyConfig
from facestyle.nn.pooling import region_average_pool

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
HAIR = CELEBAMASK_HQ.classes.index("hair")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """FID feature caches go to the test's own folder, never to ~/.cache."""
    monkeypatch.setenv("FACESTYLE_CACHE", str(tmp_path / "cache"))


def _tiny(tmp_path_factory, name: str, **changes) -> Path:
    torch.manual_seed(0)
    model = FaceStyleNet(dataclasses.replace(get_preset("tiny").model, **changes))
    return model.save_pretrained(tmp_path_factory.mktemp(name) / "ckpt")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "tiny")


@pytest.fixture(scope="module")
def tiny_off_checkpoint(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "tiny-off", attention="off")


@pytest.fixture(scope="module")
def tiny_lapa_checkpoint(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory, "tiny-lapa", label_set="lapa")


@pytest.fixture(scope="module")
def no_weights(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("no-weights")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A weights folder with random AlexNet and FID InceptionV3 files in the published key layouts (the
    writers of tests/test_metrics.py); LPIPS's linear heads come from inside torchmetrics."""
    from test_metrics import _inception_state, alexnet_state

    folder = tmp_path_factory.mktemp("random-weights")
    g = torch.Generator().manual_seed(0)
    torch.save(alexnet_state(g), folder / "alexnet-owt-7be5be79.pth")
    torch.save(_inception_state(g), folder / INCEPTION_FILE)
    yield folder
    (folder / INCEPTION_FILE).unlink()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _measured(results: dict, table: int = 0) -> dict:
    return next(r for r in results["tables"][table]["rows"] if r["source"] == "measured")["values"]


# ---------------------------------------------------------------------------------------------- reconstruction


def test_reconstruction_on_shared_faces_skips_missing_weights(real_faces, tiny_checkpoint, no_weights, tmp_path,
                                                             capsys):
    out = tmp_path / "report"
    code, stdout, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "reconstruction",
                             "--data", f"folder:{real_faces}", "--limit", 3, "--weights-dir", no_weights,
                             "--paper-rows", "celebamask-hq", "--out", out)
    assert code == 0, err
    assert "skipped" in stdout
    results = _results(out)
    table = results["tables"][0]
    values = _measured(results)
    assert 0 < values["psnr"] < 60 and -1 <= values["ssim"] <= 1
    assert values["lpips"] is None and values["fid"] is None
    assert "alexnet-owt-7be5be79.pth" in table["skipped"]["lpips"]
    assert INCEPTION_FILE in table["skipped"]["fid"]
    paper = {r["method"]: r["values"] for r in table["rows"] if r["source"] != "measured"}
    assert paper["Ours"] == dict(zip(("psnr", "ssim", "lpips", "fid"), PAPER_TABLE1["CelebAMask-HQ"]["Ours"]))
    report = (out / "report.md").read_text()
    assert "Table 1" in report and "skipped" in report and INCEPTION_FILE in report
    rows = _csv_rows(out / "per_image.csv")
    assert [r["name"] for r in rows] == sorted(p.stem for p in (real_faces / "images").iterdir())[:3]
    # Per-image PSNR is the model's reconstruction at its size against the input on [0, 1].
    model = FaceStyleNet.from_pretrained(tiny_checkpoint)
    from facestyle.data import eval_transform

    image, labels = eval_transform(64)(load_image(next((real_faces / "images").glob(f"{rows[0]['name']}.*"))),
                                       load_labels(real_faces / "labels" / f"{rows[0]['name']}.png", CELEBAMASK_HQ))
    with torch.inference_mode():
        expected = psnr(to_unit_range(model(image[None], labels[None])), to_unit_range(image[None]))
    assert float(rows[0]["psnr"]) == pytest.approx(float(expected), abs=1e-3)
    csv_rows = _csv_rows(out / "results.csv")
    assert csv_rows[0]["source"] == "measured" and csv_rows[0]["lpips"] == ""
    assert len(csv_rows) == 1 + len(PAPER_TABLE1["CelebAMask-HQ"])


def test_reconstruction_computes_lpips_and_fid_with_weight_files(real_faces, tiny_checkpoint, random_weights,
                                                                 tmp_path):
    options = EvaluateOptions(checkpoint=str(tiny_checkpoint), task="reconstruction",
                              data=f"folder:{real_faces}", out=tmp_path / "report", limit=3,
                              weights_dir=str(random_weights), progress=False)
    report = evaluate(options)
    table = report.tables[0]
    assert table.skipped == {}
    values = table.rows[0].values
    assert values["lpips"] > 0 and math.isfinite(values["fid"])
    assert table.counts["fid"] == 3
    assert all(r["lpips"] > 0 for r in report.per_image)
    cached = list((tmp_path / "cache" / "fid").glob("*.safetensors"))
    assert len(cached) == 1  # the real images' features, keyed by files, size and weights
    again = evaluate(dataclasses.replace(options, out=tmp_path / "again"))
    assert again.tables[0].rows[0].values["fid"] == pytest.approx(values["fid"], rel=1e-6)


def test_reconstruction_with_the_demo_model(real_faces, tmp_path, no_weights):
    if not (demo_dir() / "config.json").is_file():
        pytest.skip("the bundled demo model is not installed")
    report = evaluate(EvaluateOptions(checkpoint="demo", task="reconstruction", data=f"folder:{real_faces}",
                                      out=tmp_path / "report", limit=2, weights_dir=str(no_weights), progress=False))
    values = report.tables[0].rows[0].values
    assert math.isfinite(values["psnr"]) and math.isfinite(values["ssim"])


# ---------------------------------------------------------------------------------------------- transfer


def test_transfer_splits_the_test_set_into_halves(real_faces, tiny_checkpoint, no_weights, tmp_path, capsys):
    torch.manual_seed(0)
    classifier = tmp_path / "hs"
    HarmonyClassifier(HarmonyConfig(image_size=32, width=8, depth=3)).save_pretrained(classifier)
    out = tmp_path / "report"
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "transfer", "--data",
                        f"folder:{real_faces}", "--limit", 5, "--regions", "skin,hair", "--harmony-classifier",
                        classifier, "--weights-dir", no_weights, "--out", out)
    assert code == 0, err
    names = sorted(p.stem for p in (real_faces / "images").iterdir())[:5]
    rows = _csv_rows(out / "per_image.csv")
    assert [(r["target"], r["reference"], r["region"]) for r in rows] == [
        (names[0], names[2], "skin"), (names[1], names[3], "skin"),
        (names[0], names[2], "hair"), (names[1], names[3], "hair")]  # the fifth image is left out
    assert all(0 <= float(r["hs"]) <= 1 for r in rows)
    results = _results(out)
    values = _measured(results)
    assert 0 <= values["skin_hs"] <= 1 and 0 <= values["hair_hs"] <= 1
    assert values["skin_fid"] is None and INCEPTION_FILE in results["tables"][0]["skipped"]["skin_fid"]
    report = (out / "report.md").read_text()
    assert "Table 2" in report and "skin (skin + nose)" in report and "left out" in report


def test_transfer_pools_one_map_and_draws_another(tiny_checkpoint):
    model = FaceStyleNet.from_pretrained(tiny_checkpoint)
    target, t_lab = (torch.from_numpy(a)[None] for a in render(sample_face(3, 0), 64))
    reference, r_lab = (torch.from_numpy(a)[None] for a in render(sample_face(3, 1), 64))
    classes = torch.zeros(CELEBAMASK_HQ.num_classes, dtype=torch.bool)
    classes[list(SKIN_CLASSES)] = True
    pooled = torch.where(t_lab == 17, VOID, t_lab)  # the neck left out of pooling, drawn as itself
    with torch.inference_mode():
        ours = model.transfer(target, pooled, reference, r_lab, classes, decode_labels=t_lab)
        s_t, p_t = model.encode(target, pooled)
        s_r, p_r = model.encode(reference, r_lab)
        theirs = model.decode(t_lab, model.harmonize(model.compose(s_t, p_t, s_r, p_r, classes), s_t, p_t))
    assert torch.equal(ours, theirs)


# ---------------------------------------------------------------------------------------------- cross-dataset


def test_label_mapping_between_celebamask_and_lapa():
    to_lapa = label_lookup(CELEBAMASK_HQ, LAPA)
    for name in ("background", "skin", "nose", "l_eye", "r_brow", "mouth", "u_lip", "l_lip", "hair"):
        assert LAPA.classes[to_lapa[CELEBAMASK_HQ.classes.index(name)]] == name
    assert set(unmapped_classes(CELEBAMASK_HQ, LAPA)) == {"eye_g", "l_ear", "r_ear", "hat", "ear_r", "neck_l",
                                                          "neck", "cloth"}
    assert unmapped_classes(LAPA, CELEBAMASK_HQ) == []  # LaPa -> CelebAMask-HQ is total
    labels = torch.tensor([[1, 2, 17, 13]])
    assert map_labels(labels, to_lapa, void_to_background=False).tolist() == [[1, 6, VOID, 10]]
    assert map_labels(labels, to_lapa, void_to_background=True).tolist() == [[1, 6, 0, 10]]
    assert np.array_equal(label_lookup(LAPA, LAPA), np.arange(LAPA.num_classes))


def test_void_pixels_are_left_out_of_pooling(tiny_lapa_checkpoint):
    model = FaceStyleNet.from_pretrained(tiny_lapa_checkpoint)
    image, celeba_labels = (torch.from_numpy(a)[None] for a in render(sample_face(5, 0), 64))
    labels = map_labels(celeba_labels, label_lookup(CELEBAMASK_HQ, LAPA), void_to_background=False)
    assert (labels == VOID).any() and (labels == 0).any()
    with torch.inference_mode():
        codes, presence = model.encode(image, labels)
        features = model.encoder(image)
        # Oracle: pool over the non-void pixels only (void pixels as an extra class that is thrown away).
        pooled, present = region_average_pool(features, labels.clamp_min(0), LAPA.num_classes)
        background_only = labels.clone()
        background_only[labels == VOID] = 1  # moves void pixels to skin: the background code must not change
        pooled2, _ = region_average_pool(features, background_only, LAPA.num_classes)
    assert torch.allclose(codes[:, 0], pooled2[:, 0], atol=1e-6)
    assert not torch.allclose(codes[:, 0], pooled[:, 0])  # as background, void pixels would shift the code
    assert torch.equal(presence[:, 1:], present[:, 1:])


def _lapa_folder(root: Path, count: int, size: int = 64) -> Path:
    """A LaPa-layout folder (test/images + test/labels, LaPa classes) made from synthetic faces."""
    lookup = label_lookup(CELEBAMASK_HQ, LAPA)
    for i in range(count):
        image, labels = render(sample_face(11, i), size)
        save_image(torch.from_numpy(image), root / "test" / "images" / f"{i}.png")
        save_labels(np.where(lookup[labels] == VOID, 0, lookup[labels]), root / "test" / "labels" / f"{i}.png")
    return root


def test_cross_transfer_maps_label_sets(tiny_checkpoint, tiny_lapa_checkpoint, no_weights, tmp_path, capsys):
    lapa = _lapa_folder(tmp_path / "lapa", 3)
    # A CelebAMask-HQ checkpoint: LaPa targets map into its classes (totally), references are native.
    out = tmp_path / "celeba-model"
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "cross-transfer",
                        "--data", f"lapa:{lapa}", "--reference-data", "synthetic:20", "--limit", 3,
                        "--weights-dir", no_weights, "--paper-rows", "celebamask-hq", "--out", out)
    assert code == 0, err
    results = _results(out)
    rows = _csv_rows(out / "per_image.csv")
    assert len(rows) == 6 and {r["region"] for r in rows} == {"skin", "hair"}
    assert all(r["target_has_region"] == "true" for r in rows if r["region"] == "skin")
    notes = " ".join(results["notes"])
    assert "lapa -> celebamask-hq" in notes and "Every class has a counterpart" in notes
    assert "PSNR/HS" in notes and "FID/HS" in notes  # the paper's Table 3 caption
    paper = {r["method"]: r["values"] for r in results["tables"][0]["rows"] if r["source"] != "measured"}
    assert paper["Ours"]["skin_hs"] == PAPER_TABLE3["CelebAMask-HQ"]["Ours"][0][1]
    # A LaPa checkpoint: CelebAMask-HQ references map into LaPa, classes without a counterpart dropped.
    out = tmp_path / "lapa-model"
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_lapa_checkpoint, "--task", "cross-transfer",
                        "--data", f"lapa:{lapa}", "--reference-data", "synthetic:20", "--limit", 2,
                        "--regions", "hair", "--weights-dir", no_weights, "--out", out)
    assert code == 0, err
    notes = " ".join(_results(out)["notes"])
    assert "celebamask-hq -> lapa" in notes and "neck" in notes and "left out of region pooling" in notes
    assert [r["reference_has_region"] for r in _csv_rows(out / "per_image.csv")] == ["true", "true"]


# ---------------------------------------------------------------------------------------------- bench-harmony


def test_ground_truth_equals_the_target_outside_the_region():
    for index in range(3):
        pair = make_pair(0, index)
        assert pair.light_difference >= 0.15
        assert pair.light_difference == pytest.approx(light_difference(pair.target_light, pair.reference_light))
        target, labels = render(pair.target, 64)
        for classes in (SKIN_CLASSES, (HAIR,)):
            truth, truth_labels = ground_truth(pair, classes, 64)
            assert np.array_equal(truth_labels, labels)
            inside = np.isin(labels, classes)
            assert np.array_equal(truth[:, ~inside], target[:, ~inside])
            assert not np.array_equal(truth[:, inside], target[:, inside])
            # Under the reference's light the whole image changes: the light is not the region's.
            lit, _ = ground_truth(pair, classes, 64, illumination=pair.reference_light)
            assert not np.allclose(lit[:, ~inside], target[:, ~inside])
    assert make_pair(0, 1).reference.index == FIRST_INDEX + 3
    again = make_pair(0, 1)
    assert again.reference_light == make_pair(0, 1).reference_light  # reproducible from the seed


def test_cut_and_paste_and_masked_errors():
    t_lab = torch.tensor([[[1, 1, 0, 2]]])
    r_lab = torch.tensor([[[1, 0, 1, 0]]])
    target = torch.zeros(1, 3, 1, 4)
    reference = torch.arange(12, dtype=torch.float32).view(1, 3, 1, 4) / 12
    out = cut_and_paste(target, t_lab, reference, r_lab, (1, 2))
    mean_1 = reference[0, :, 0, [0, 2]].mean(1)
    assert torch.equal(out[0, :, 0, 0], reference[0, :, 0, 0])  # both maps have class 1: the reference's pixel
    assert torch.allclose(out[0, :, 0, 1], mean_1)  # only the target has it: the reference's mean colour
    assert torch.equal(out[0, :, 0, 2:], target[0, :, 0, 2:])  # background, and class 2 the reference lacks
    a, b = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    b[:, :, 0, 0] = 0.1
    mask = torch.tensor([[[True, False], [False, False]]])
    e = masked_errors(a, b, mask)
    assert float(e["l1"]) == pytest.approx(0.1) and float(e["colour"]) == pytest.approx(0.1)
    assert float(e["psnr"]) == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(float(masked_errors(a, b, ~mask)["psnr"]))
    assert math.isnan(float(masked_errors(a, b, torch.zeros_like(mask))["l1"]))


def test_bench_harmony_reports_every_row(tiny_checkpoint, tiny_off_checkpoint, random_weights, tmp_path, capsys):
    torch.manual_seed(0)
    classifier = tmp_path / "hs"
    HarmonyClassifier(HarmonyConfig(image_size=32, width=8, depth=3)).save_pretrained(classifier)
    out = tmp_path / "bench"
    code, stdout, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--attention-off-checkpoint",
                             tiny_off_checkpoint, "--pairs", 3, "--seed", 0, "--batch-size", 2, "--sheet-pairs", 2,
                             "--harmony-classifier", classifier, "--weights-dir", random_weights, "--out", out)
    assert code == 0, err
    assert "cut-and-paste" in stdout
    results = _results(out)
    assert [t["title"].split(":")[0] for t in results["tables"]] == ["skin (skin + nose)", "hair"]
    methods = ["MRSA", "MRSA bypassed at inference", "w/o SA (attention = off model)", "cut-and-paste",
               "no transfer (the target)", "ground-truth reconstruction (floor)"]
    for table in results["tables"]:
        assert [r["method"] for r in table["rows"]] == methods
        assert table["skipped"] == {}
        for row in table["rows"]:
            v = row["values"]
            for key in ("l1_in", "psnr_in", "colour_in", "lpips_in", "hs"):
                assert isinstance(v[key], float) and math.isfinite(v[key]), (row["method"], key)
            assert 0 <= v["hs"] <= 1
            if row["method"] in ("cut-and-paste", "no transfer (the target)"):
                # They change nothing outside the region (masked LPIPS still sees across the border).
                assert v["l1_out"] == 0 and v["psnr_out"] == "inf" and 0 < v["lpips_out"] < v["lpips_in"]
            else:
                assert v["l1_out"] > 0 and math.isfinite(v["psnr_out"]) and v["lpips_out"] > 0
        by = {r["method"]: r["values"] for r in table["rows"]}
        assert by["MRSA"] == by["MRSA bypassed at inference"]  # alpha = 0 at initialisation: MRSA is the identity
    rows = _csv_rows(out / "per_pair.csv")
    assert len(rows) == 3 * 2 * len(methods)
    assert {r["pair"] for r in rows} == {"0", "1", "2"}
    assert (out / "contact_sheet.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "alpha = 0" in report and "contact_sheet.png" in report and "scores the ground truth" in report


def test_bench_harmony_runs_mrsa_and_its_bypass(tiny_checkpoint):
    from facestyle.evaluation.bench_harmony import _Runner

    model = FaceStyleNet.from_pretrained(tiny_checkpoint)
    with torch.no_grad():
        model.mrsa.alpha.fill_(1.0)  # a trained MRSA: the switch must reach it
    pair = make_pair(0, 0)
    images = {k: torch.from_numpy(v)[None] for k, v in render_pair(pair, 64).items()}
    runner = _Runner(model, 64)
    args = (images["target"], images["target_labels"], images["reference"], images["reference_labels"], SKIN_CLASSES)
    on, off = runner.transfer(*args, harmonize=True), runner.transfer(*args, harmonize=False)
    assert on.shape == (1, 3, 64, 64) and not torch.allclose(on, off)
    small = _Runner(model, 32)  # a benchmark resolution other than the model's: results come back at it
    assert small.reconstruct(images["target"], images["target_labels"]).shape == (1, 3, 32, 32)


def test_bench_harmony_pairs_render_under_different_lights():
    pair = make_pair(7, 0, min_light_difference=0.3)
    assert pair.light_difference >= 0.3
    images = render_pair(pair, 32)
    assert images["target"].shape == images["reference"].shape == (3, 32, 32)


# ---------------------------------------------------------------------------------------------- harmonization metrics


def test_fmse_and_fpsnr_against_hand_computed_values():
    from facestyle.metrics import fmse, fpsnr, mse_255, psnr_255

    preds = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[0, :, 0, 0] = 0.1  # 25.5 on the 0-255 scale, in every channel
    target[0, 0, 0, 1] = 0.2  # 51 in red only
    mask = torch.tensor([[[True, True], [False, False]]])  # the two changed pixels
    # By hand: squared errors 3 x 25.5^2 + 51^2 = 4551.75 over 3 x 2 masked values, or 3 x 4 in all.
    assert float(fmse(preds, target, mask)) == pytest.approx(758.625)
    assert float(mse_255(preds, target)) == pytest.approx(379.3125)
    assert float(fpsnr(preds, target, mask)) == pytest.approx(10 * math.log10(255 ** 2 / 758.625))
    assert float(psnr_255(preds, target)) == pytest.approx(10 * math.log10(255 ** 2 / 379.3125))
    assert float(psnr_255(preds, target)) == pytest.approx(float(psnr(preds, target)), abs=1e-4)  # scale-free
    # iHarmony4's evaluation writes fMSE as the image's MSE times its area over the foreground's.
    assert float(fmse(preds, target, mask)) == pytest.approx(float(mse_255(preds, target)) * 4 / 2)
    soft = mask[:, None].float()  # (B, 1, H, W) weights give the same
    assert float(fmse(preds, target, soft)) == pytest.approx(758.625)
    assert float(fmse(preds, target, ~mask)) == 0 and math.isinf(float(fpsnr(preds, target, ~mask)))
    assert math.isnan(float(fmse(preds, target, torch.zeros_like(mask))))
    with pytest.raises(InputError, match="to_unit_range"):
        fmse(preds - 1, target, mask)


# ---------------------------------------------------------------------------------------------- bench-harmony on photos


class IdentityHarmonizer:
    """A stand-in for DoveNet: gives its input back and records what it saw."""

    def __init__(self, path) -> None:
        self.path, self.calls = Path(path), []

    def harmonize(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(images.shape), tuple(masks.shape), sorted(masks.unique().tolist())))
        return images.clone()


@pytest.fixture
def stand_in_harmonizer(monkeypatch):
    """``load_harmonizer`` returns an :class:`IdentityHarmonizer`; the loaded ones are listed."""
    from facestyle.evaluation import harmonizer

    loaded = []

    def load(path, device="cpu"):
        loaded.append(IdentityHarmonizer(path))
        return loaded[-1]

    monkeypatch.setattr(harmonizer, "load_harmonizer", load)
    return loaded


RELIT_METHODS = ["MRSA", "MRSA bypassed at inference", "composite (no harmonization)",
                 "DoveNet after the bypassed transfer", "ground-truth reconstruction (floor)"]


def test_relit_pairs_of_the_benchmark():
    from facestyle.data.composites import relit_pairs
    from facestyle.data.relight import apply_changes, change_for

    images, labels = (torch.from_numpy(np.stack(a)) for a in zip(*(render(sample_face(2, i), 32) for i in range(2))))
    classes = torch.zeros(CELEBAMASK_HQ.num_classes, dtype=torch.bool)
    classes[HAIR] = True
    pairs = relit_pairs(images, labels, CELEBAMASK_HQ, seed=4, indices=[7, 8], classes=classes)
    assert torch.equal(pairs.truth, images) and torch.equal(pairs.target, images)  # the ground truth: the target
    assert torch.equal(pairs.reference, apply_changes(images, [change_for(4, 7), change_for(4, 8)]))
    inside = (labels == HAIR)[:, None]
    assert torch.equal(pairs.mask.bool(), inside)  # the table's region, not a drawn one
    assert torch.equal(pairs.composite, torch.where(inside, pairs.reference, images))
    again = relit_pairs(images, labels, CELEBAMASK_HQ, seed=4, indices=[7, 8], classes=classes)
    assert torch.equal(again.reference, pairs.reference)
    other = relit_pairs(images, labels, CELEBAMASK_HQ, seed=5, indices=[7, 8], classes=classes)
    assert not torch.equal(other.reference, pairs.reference)


def test_bench_harmony_on_real_faces(real_faces, tiny_checkpoint, stand_in_harmonizer, tmp_path, capsys):
    from facestyle.data import eval_transform
    from facestyle.evaluation.bench_relit import RelitOptions, bench_relit
    from facestyle.metrics import fmse

    out = tmp_path / "bench"
    dove = tmp_path / "dovenet"
    dove.mkdir()
    code, stdout, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--data", f"folder:{real_faces}",
                             "--pairs", 3, "--seed", 5, "--batch-size", 2, "--sheet-pairs", 2, "--harmonizer", dove,
                             "--out", out)
    assert code == 0, err
    assert "fMSE" in stdout and "composite (no harmonization)" in stdout
    assert [h.path for h in stand_in_harmonizer] == [dove]
    shapes = {call[:2] for call in stand_in_harmonizer[0].calls}
    assert shapes == {((2, 3, 64, 64), (2, 1, 64, 64)), ((1, 3, 64, 64), (1, 1, 64, 64))}
    assert {tuple(call[2]) for call in stand_in_harmonizer[0].calls} == {(0.0, 1.0)}  # masks in {0, 1}
    results = _results(out)
    assert [t["title"].split(":")[0] for t in results["tables"]] == ["skin (skin + nose)", "hair"]
    for table in results["tables"]:
        assert [r["method"] for r in table["rows"]] == RELIT_METHODS
        assert [c["key"] for c in table["columns"]] == ["mse", "psnr", "fmse", "fpsnr", "colour_in"]
        by = {r["method"]: r["values"] for r in table["rows"]}
        assert all(math.isfinite(v) for row in by.values() for v in row.values())
        # The stand-in harmonizer gives the bypassed transfer back; alpha = 0 makes MRSA the identity.
        assert by["DoveNet after the bypassed transfer"] == by["MRSA bypassed at inference"] == by["MRSA"]
        assert by["composite (no harmonization)"]["fmse"] > 0
    assert (out / "contact_sheet.png").stat().st_size > 0
    rows = _csv_rows(out / "per_pair.csv")
    names = sorted(p.stem for p in (real_faces / "images").iterdir())[:3]
    assert len(rows) == 3 * 2 * len(RELIT_METHODS) and {r["photo"] for r in rows} == set(names)
    composite = [r for r in rows if r["method"] == "composite"]
    for r in composite:  # exact outside the region: the whole image's MSE is the region's scaled by its area
        assert float(r["mse"]) == pytest.approx(float(r["fmse"]) * float(r["region_fraction"]), rel=1e-4)
    # The floor is the checkpoint's reconstruction of the unchanged target.
    model = FaceStyleNet.from_pretrained(tiny_checkpoint)
    image, labels = eval_transform(64)(load_image(next((real_faces / "images").glob(f"{names[1]}.*"))),
                                       load_labels(real_faces / "labels" / f"{names[1]}.png", CELEBAMASK_HQ))
    with torch.inference_mode():
        recon = model(image[None], labels[None])
    inside = torch.isin(labels, torch.as_tensor(CELEBAMASK_HQ.region_classes("hair")))[None]
    expected = fmse(to_unit_range(recon), to_unit_range(image[None]), inside)
    floor = next(r for r in rows if r["photo"] == names[1] and r["region"] == "hair" and r["method"] == "oracle")
    assert float(floor["fmse"]) == pytest.approx(float(expected), rel=1e-4)
    # Deterministic per seed; another seed changes the references, not the floor. No harmonizer: no DoveNet row.
    options = RelitOptions(checkpoint=str(tiny_checkpoint), data=f"folder:{real_faces}", out=tmp_path / "again",
                           pairs=3, seed=5, harmonizer=str(dove), batch_size=2, sheet_pairs=0, progress=False)
    again = bench_relit(options)
    assert [[r.values for r in t.rows] for t in again.tables] == [[r["values"] for r in t["rows"]]
                                                                  for t in results["tables"]]
    other = bench_relit(dataclasses.replace(options, seed=6, harmonizer=None, regions=["skin"], out=tmp_path / "other"))
    assert [r.method for r in other.tables[0].rows] == [m for m in RELIT_METHODS if not m.startswith("DoveNet")]
    values = [{r.method: r.values for r in t.rows} for t in (again.tables[0], other.tables[0])]
    assert values[0]["composite (no harmonization)"] != values[1]["composite (no harmonization)"]
    assert values[0]["ground-truth reconstruction (floor)"] == values[1]["ground-truth reconstruction (floor)"]


def test_bench_harmony_synthetic_new_rows(tiny_checkpoint, stand_in_harmonizer, no_weights, tmp_path, capsys):
    import shutil

    checkpoint = tmp_path / "with-harmonizer"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (checkpoint / "harmonizer").mkdir()
    (checkpoint / "harmonizer" / "config.json").write_text("{}")  # found beside the generator
    out = tmp_path / "bench"
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", checkpoint, "--compare-checkpoint", tiny_checkpoint,
                        "--pairs", 2, "--regions", "skin", "--sheet-pairs", 1, "--weights-dir", no_weights,
                        "--out", out)
    assert code == 0, err
    assert [h.path for h in stand_in_harmonizer] == [checkpoint / "harmonizer"]
    table = _results(out)["tables"][0]
    compared = f"MRSA, compared checkpoint ({tiny_checkpoint.name})"
    assert [r["method"] for r in table["rows"]] == [
        "MRSA", "MRSA bypassed at inference", "cut-and-paste", "no transfer (the target)",
        "ground-truth reconstruction (floor)", "DoveNet after the bypassed transfer", compared]
    by = {r["method"]: r["values"] for r in table["rows"]}
    assert by["DoveNet after the bypassed transfer"] == by["MRSA bypassed at inference"]
    assert by[compared] == by["MRSA"]  # the same weights compared with themselves
    assert len(_csv_rows(out / "per_pair.csv")) == 2 * 7
    # Without a harmonizer beside it or named, no DoveNet row.
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--pairs", 1, "--regions", "hair",
                        "--sheet-pairs", 0, "--weights-dir", no_weights, "--out", tmp_path / "plain")
    assert code == 0, err
    assert "DoveNet after the bypassed transfer" not in [r["method"] for r in _results(tmp_path / "plain")["tables"][0]
                                                         ["rows"]]
    assert len(stand_in_harmonizer) == 1


def test_bench_harmony_on_photos_refuses_synthetic_options(tiny_checkpoint, real_faces, tmp_path, capsys):
    data = f"folder:{real_faces}"
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--data", data,
                        "--compare-checkpoint", tiny_checkpoint, "--out", tmp_path / "b")
    assert code == 2 and "--compare-checkpoint: only for the synthetic benchmark" in err
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--split", "test",
                        "--out", tmp_path / "b")
    assert code == 2 and "--split and --data-label-set go with --data" in err
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--data", data, "--regions", "tail",
                        "--out", tmp_path / "b")
    assert code == 2 and "unknown region 'tail'" in err
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--data", data,
                        "--harmonizer", tmp_path / "nowhere", "--out", tmp_path / "b")
    assert code == 2 and "--harmonizer" in err
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------- multimodal


def test_multimodal_with_a_style_sampler(monkeypatch, tiny_checkpoint, random_weights, tmp_path):
    """The mapping networks are another module's; a stand-in sampler that repaints the region with noise."""
    from facestyle.editor.editor import Editor

    calls = []

    def sample(editor, target, labels, region, n, seed, return_tensors=False):
        calls.append((region, n, seed))
        inside = torch.isin(labels, torch.as_tensor(editor.label_set.region_classes(region)))
        noise = torch.rand(n, 3, *labels.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        return torch.where(inside, noise, target.expand(n, -1, -1, -1))

    monkeypatch.setattr(Editor, "sample", sample)
    options = EvaluateOptions(checkpoint=str(tiny_checkpoint), task="multimodal", data="synthetic:20",
                              out=tmp_path / "report", limit=2, styles=3, regions=["skin"],
                              weights_dir=str(random_weights), paper_rows="celebamask-hq",
                              progress=False)
    report = evaluate(options)
    values = report.tables[0].rows[0].values
    assert values["skin_mcsd"] > values["skin_mocd"] > 0  # the region varies; the rest only through receptive fields
    assert math.isfinite(values["skin_fid"]) and report.tables[0].counts["skin_fid"] == 6
    assert [c[:2] for c in calls] == [("skin", 3), ("skin", 3)] and calls[0][2] != calls[1][2]
    assert len(report.per_image) == 2 and {"mcsd", "mocd"} <= set(report.per_image[0])
    assert any(r.source == "paper, CelebAMask-HQ" and r.method == "Ours w/ CNF" for r in report.tables[0].rows)
    ablation = {r.method: r.values for r in report.tables[0].rows if r.method.endswith("(Table 5)")}
    # the RSM ablation's rows, FID only
    assert ablation["SEAN+StarGAN-v2 (Table 5)"] == {"skin_fid": 27.19, "skin_mcsd": None, "skin_mocd": None}
    seeds = [c[2] for c in calls]
    calls.clear()
    evaluate(dataclasses.replace(options, out=tmp_path / "again"))
    assert [c[2] for c in calls] == seeds  # the styles are reproducible from --seed


# ---------------------------------------------------------------------------------------------- errors


def test_evaluate_errors(tiny_checkpoint, real_faces, tmp_path, capsys):
    data = f"folder:{real_faces}"
    with pytest.raises(InputError, match="unknown task"):
        evaluate(EvaluateOptions(checkpoint=str(tiny_checkpoint), task="denoising", data=data, out=tmp_path / "r"))
    with pytest.raises(SystemExit):  # argparse refuses it too
        main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--task", "denoising", "--data", data,
              "--out", str(tmp_path / "r")])
    capsys.readouterr()
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tmp_path / "nowhere", "--task", "reconstruction",
                        "--data", data, "--out", tmp_path / "r")
    assert code == 2 and "checkpoint not found" in err
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "multimodal",
                        "--data", data, "--limit", 1, "--out", tmp_path / "r")
    assert code == 2 and "mapping" in err.lower()
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "cross-transfer",
                        "--data", data, "--out", tmp_path / "r")
    assert code == 2 and "--reference-data" in err
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "reconstruction",
                        "--data", data, "--paper-rows", "--out", tmp_path / "r")
    assert code == 2 and "--paper-rows celebamask-hq|ffhq|lapa" in err
    code, _, err = _run(capsys, "evaluate", "--checkpoint", tiny_checkpoint, "--task", "transfer",
                        "--data", data, "--regions", "tail", "--out", tmp_path / "r")
    assert code == 2 and "unknown region 'tail'" in err
    code, _, err = _run(capsys, "bench-harmony", "--checkpoint", tiny_checkpoint, "--attention-off-checkpoint",
                        tiny_checkpoint, "--pairs", 1, "--out", tmp_path / "b")
    assert code == 2 and "attention = on" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "b").exists()
