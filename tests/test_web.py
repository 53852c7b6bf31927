"""The web editor in a real browser: Playwright driving Debian's chromium against ``facestyle serve``.

Skips (with the reason) when gradio, playwright or /usr/bin/chromium is missing; ``make test`` installs
them (``scripts/install-browser.sh``). Screenshots go to ``$FACESTYLE_TEST_ARTIFACTS`` (default
``tests/artifacts/``); their paths are printed.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import drawn_face, tiny_checkpoint
from PIL import Image

from facestyle.checkpoint import demo_dir
from facestyle.config import get_preset
from facestyle.labels import CELEBAMASK_HQ

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("FACESTYLE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
MAX_SIDE, MAX_UPLOAD_MB = 512, 0.5
HAIR = CELEBAMASK_HQ.classes.index("hair")

pytest.importorskip("gradio", reason="the web extra is not installed (pip install -e '.[web]')")

from facestyle.app.server import (  # noqa: E402 (needs gradio)
    ServerLimits,
    _App,
    labels_from_painting,
    read_label_upload,
    read_upload,
    strokes_from_layers,
)

# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web")
    paths: dict[str, Path] = {}
    for name, seed in (("target", 0), ("reference", 1)):
        photo, labels = drawn_face(seed, 128)
        paths[name] = root / f"{name}.png"
        paths[f"{name}_labels"] = root / f"{name}_labels.png"
        Image.fromarray(photo).save(paths[name])
        Image.fromarray(labels, "L").save(paths[f"{name}_labels"])
    paths["too_wide"] = root / "too_wide.png"  # small file, too many pixels
    Image.new("RGB", (MAX_SIDE + 100, 200), (120, 90, 80)).save(paths["too_wide"])
    paths["too_heavy"] = root / "too_heavy.png"  # within the pixel cap, over the byte cap (noise: no compression)
    noise = np.random.default_rng(0).integers(0, 256, (MAX_SIDE - 12, MAX_SIDE - 12, 3), dtype=np.uint8)
    Image.fromarray(noise).save(paths["too_heavy"])
    assert paths["too_heavy"].stat().st_size > MAX_UPLOAD_MB * 2**20
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``facestyle serve`` in a subprocess on a free loopback port: with ``$FACESTYLE_TEST_WEB_CHECKPOINT``,
    else the demo model when it is installed, else a tiny random checkpoint."""
    checkpoint = os.environ.get("FACESTYLE_TEST_WEB_CHECKPOINT")
    if checkpoint is None and (demo_dir() / "config.json").is_file():
        checkpoint = "demo"
    if checkpoint is None:
        checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("srv") / "tiny")
    port = _free_port()
    log = tmp_path_factory.mktemp("srv-log") / "serve.log"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "facestyle.cli", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
             "--max-side", str(MAX_SIDE), "--max-upload-mb", str(MAX_UPLOAD_MB)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"facestyle serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"facestyle serve did not answer on {url} within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[web]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (run scripts/install-browser.sh as root)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # an empty user data dir
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1100})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture()
def page(browser_context, server):
    page = browser_context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server)
    page.wait_for_selector("#target-photo input[type=file]", state="attached")
    yield page
    page.close()


def screenshot(page, name: str, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


def image_in(page, selector: str) -> np.ndarray:
    """The image an <img> inside ``selector`` shows, fetched from the server, as (H, W, 3) uint8."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    response = page.request.get(src if src.startswith("http") else page.url.rstrip("/") + "/" + src.lstrip("/"))
    assert response.ok, src
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def upload(page, selector: str, path: Path) -> None:
    page.locator(f"{selector} input[type=file]").set_input_files(str(path))


def wait_for_status(page, text: str) -> str:
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text)
    return page.locator("#status").inner_text()


def toast_text(page) -> str:
    """The text of the message the page pops up, once it has faded in."""
    toast = page.locator("[data-testid=toast-body]").first
    toast.wait_for(state="visible", timeout=30_000)
    page.wait_for_function("() => getComputedStyle(document.querySelector('[data-testid=toast-body]')).opacity === '1'")
    return toast.inner_text()


def load_faces(page, files) -> None:
    upload(page, "#target-photo", files["target"])
    upload(page, "#target-labels", files["target_labels"])
    wait_for_status(page, "target: label map uploaded")
    upload(page, "#reference-photo", files["reference"])
    upload(page, "#reference-labels", files["reference_labels"])
    wait_for_status(page, "reference: label map uploaded")
    page.wait_for_selector("#target-overlay img")
    page.wait_for_selector("#reference-overlay img")


def painting_canvas(page, files, tab: str, editor: str):
    """Load the faces, open ``tab`` and wait for the canvas of its image editor ``editor``."""
    load_faces(page, files)
    page.get_by_role("tab", name=tab).click()
    canvas = page.locator(f"{editor} canvas").first
    canvas.wait_for(state="visible")
    page.wait_for_timeout(500)
    return canvas


# --------------------------------------------------------------------------------- in a real browser


@pytest.mark.slow
def test_upload_transfer_result(page, files):
    load_faces(page, files)
    page.click("#transfer-button")
    wait_for_status(page, "Transferred skin, hair")
    page.wait_for_selector("#result-image img")
    result = image_in(page, "#result-image")
    target = np.asarray(Image.open(files["target"]).convert("RGB"))
    assert result.shape == target.shape
    assert np.abs(result.astype(float) - target).mean() > 5  # a new image, not the input shown back
    screenshot(page, "web-transfer")


def result_src(page) -> str | None:
    img = page.locator("#result-image img")
    return img.first.get_attribute("src") if img.count() else None


def wait_for_new_result(page, old: str | None) -> np.ndarray:
    page.wait_for_function("old => { const i = document.querySelector('#result-image img');"
                           " return i && i.getAttribute('src') !== old; }", arg=old)
    return image_in(page, "#result-image")


@pytest.mark.slow
def test_shape_edit_in_the_browser(page, files):
    canvas = painting_canvas(page, files, "Shape", "#shape-editor")
    page.click("#shape-button")  # nothing painted yet: the face redrawn on its own map
    wait_for_status(page, "Redrawn on the edited label map")
    unchanged = wait_for_new_result(page, None)

    box = canvas.bounding_box()
    cx, cy, side = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["height"]
    page.mouse.move(cx - side * 0.4, cy + side * 0.3)
    page.mouse.down()  # paint hair (the brush's default colour) across the neck and the clothes
    page.mouse.move(cx + side * 0.4, cy + side * 0.3, steps=25)
    page.mouse.move(cx + side * 0.4, cy + side * 0.2, steps=5)
    page.mouse.move(cx - side * 0.4, cy + side * 0.2, steps=25)
    page.mouse.up()
    page.wait_for_timeout(300)
    old = result_src(page)
    page.click("#shape-button")
    edited = wait_for_new_result(page, old)
    wait_for_status(page, "Redrawn on the edited label map")
    target = np.asarray(Image.open(files["target"]).convert("RGB"))
    assert edited.shape == target.shape
    assert np.abs(edited.astype(float) - target).mean() > 5  # a new image, not the input shown back
    lower, upper = (np.abs(edited.astype(float) - unchanged).mean(-1)[rows].mean()
                    for rows in (slice(70, 128), slice(0, 50)))
    assert lower > upper  # the painted (lower) part changed most
    screenshot(page, "web-shape-edit")


@pytest.mark.slow
def test_colour_edit_in_the_browser(page, files):
    canvas = painting_canvas(page, files, "Colour", "#color-editor")
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - box["height"] * 0.2, cy - box["height"] * 0.38)
    page.mouse.down()
    page.mouse.move(cx + box["height"] * 0.2, cy - box["height"] * 0.38, steps=20)
    page.mouse.up()
    page.wait_for_timeout(300)
    page.click("#color-button")
    text = wait_for_status(page, "Recoloured")
    assert "hair" in text


@pytest.mark.slow
def test_an_oversized_upload_is_refused_with_a_message(page, files):
    upload(page, "#target-photo", files["too_wide"])
    message = toast_text(page)
    assert f"up to {MAX_SIDE} pixels a side" in message, message
    screenshot(page, "web-oversized-upload", full_page=False)  # the message is a toast over the viewport
    page.reload()
    page.wait_for_selector("#target-photo input[type=file]", state="attached")
    upload(page, "#target-photo", files["too_heavy"])
    message = toast_text(page)
    assert "maximum allowed size" in message, message


@pytest.mark.slow
def test_the_page_names_no_server_paths_and_binds_to_loopback(page, server):
    assert server.startswith("http://127.0.0.1:")
    html = page.content()
    assert str(REPO) not in html and "/tmp/" not in html


# ---------------------------------------------------------------------------- the handlers, without a page


def _no_progress(*args, **kwargs) -> None:
    pass


def test_uploads_are_checked_against_the_limits(files, tmp_path):
    limits = ServerLimits(max_upload_mb=MAX_UPLOAD_MB, max_side=MAX_SIDE)
    assert read_upload(files["target"], limits).shape == (128, 128, 3)
    from facestyle.errors import InputError

    with pytest.raises(InputError, match=f"up to {MAX_SIDE} pixels a side"):
        read_upload(files["too_wide"], limits)
    with pytest.raises(InputError, match="MB"):
        read_upload(files["too_heavy"], limits)
    text = tmp_path / "x.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        read_upload(text, limits)
    labels = read_label_upload(files["target_labels"], CELEBAMASK_HQ, (256, 256), limits)
    assert labels.shape == (256, 256)  # resized to the photo
    with pytest.raises(InputError, match="does not fit"):
        read_label_upload(files["target_labels"], CELEBAMASK_HQ, (100, 300), limits)


def test_a_painted_label_map_reads_its_brush_colours_from_the_layer():
    palette = np.asarray(CELEBAMASK_HQ.palette, np.uint8)
    labels = np.ones((20, 20), np.int64)
    background = np.concatenate([palette[labels], np.full((20, 20, 1), 255, np.uint8)], -1)
    layer = np.zeros((20, 20, 4), np.uint8)
    layer[5:10, :, :3] = palette[HAIR]
    layer[5:10, :, 3] = 255
    layer[10, :, :3] = palette[HAIR]
    layer[10, :, 3] = 100  # an antialiased edge, mostly transparent: the background shows
    composite = background.copy()
    composite[5:10] = layer[5:10]
    new = labels_from_painting({"background": background, "layers": [layer], "composite": composite},
                               CELEBAMASK_HQ)
    assert (new[5:10] == HAIR).all() and (new[10:] == 1).all() and (new[:5] == 1).all()
    assert strokes_from_layers([np.zeros((4, 4, 4), np.uint8)]) is None


def test_painting_a_large_photos_map_changes_only_the_painted_pixels(editor_app):
    """The canvas shows a 1000 px map at 768 px; the unpainted detail of the full map survives."""
    from facestyle.app.server import EDITOR_SIDE

    labels = np.ones((1000, 1000), np.int64)
    labels[::7, :] = 2  # thin stripes that a 768 px canvas cannot show
    _, shape_canvas, _ = editor_app.views({"image": np.zeros((1000, 1000, 3), np.uint8), "labels": labels})
    background = shape_canvas["background"]
    assert background.shape[:2] == (EDITOR_SIDE, EDITOR_SIDE)
    layer = np.zeros((EDITOR_SIDE, EDITOR_SIDE, 4), np.uint8)
    layer[:100, :, :3] = CELEBAMASK_HQ.palette[HAIR]
    layer[:100, :, 3] = 255
    new = editor_app._painted_labels(labels, {"background": background, "layers": [layer]})
    assert new.shape == labels.shape
    top = int(100 * 1000 / EDITOR_SIDE)
    assert (new[: top - 1] == HAIR).all() and np.array_equal(new[top + 1:], labels[top + 1:])


@pytest.fixture()
def editor_app(tmp_path):
    from facestyle.editor.editor import Editor

    return _App(Editor.from_pretrained(tiny_checkpoint(tmp_path / "c")), ServerLimits())


@pytest.fixture()
def styled_checkpoint(tmp_path) -> Path:
    """A tiny checkpoint with a mapping network for hair and a flow for skin beside it."""
    import dataclasses

    from facestyle.nn.flow import FLOW_PRESETS, ContinuousNormalizingFlow
    from facestyle.nn.mapping import MAPPING_PRESETS, MappingNetwork
    from facestyle.styles.bank import checkpoint_identity

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    d = get_preset("tiny").model.style_dim
    bank = {"checkpoint_sha256": checkpoint_identity(checkpoint)}
    mapping = MappingNetwork(dataclasses.replace(MAPPING_PRESETS["tiny"], region="hair", classes=(HAIR,),
                                                 style_dim=d))
    mapping.save_pretrained(checkpoint / "mapping" / "hair", bank=bank)
    flow = ContinuousNormalizingFlow(dataclasses.replace(FLOW_PRESETS["tiny"], region="skin", classes=(1, 2),
                                                         style_dim=d, hidden_dim=16, method="rk4", steps=4))
    flow.save_pretrained(checkpoint / "flow" / "skin", bank=bank)
    return checkpoint


def test_random_style_and_fine_tuning_work_when_the_checkpoint_has_the_networks(styled_checkpoint, files):
    from facestyle.editor.editor import Editor

    app = _App(Editor.from_pretrained(styled_checkpoint), ServerLimits())
    assert (app.mapping_regions, app.flow_regions) == (["hair"], ["skin"])
    target, *_ = app.load(str(files["target"]), str(files["target_labels"]), "target", _no_progress)
    first, _, text = app.sample(target, "hair", 1, _no_progress)
    again, _, _ = app.sample(target, "hair", 1, _no_progress)
    other, _, _ = app.sample(target, "hair", 2, _no_progress)
    assert np.array_equal(first, again) and not np.array_equal(first, other) and "seed 1" in text
    moved, _, _ = app.finetune(target, "skin", 1.5, 0, _no_progress)
    still, _, _ = app.finetune(target, "skin", 0.0, 0, _no_progress)
    assert moved.shape == still.shape == (128, 128, 3) and not np.array_equal(moved, still)


def test_without_style_networks_those_controls_are_off(tmp_path, files):
    from facestyle.editor.editor import Editor
    from facestyle.errors import InputError

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    app = _App(Editor.from_pretrained(checkpoint), ServerLimits())
    assert app.mapping_regions == [] and app.flow_regions == []
    with pytest.raises(InputError, match="upload a target photo first"):
        app.transfer({}, {}, ["hair"], True, _no_progress)
    state, overlay, shape_canvas, color_canvas, note = app.load(str(files["target"]), None, "target", _no_progress)
    assert state["labels"] is None and "upload a label map" in note and shape_canvas is None
    with pytest.raises(InputError, match="no label map"):
        app.color(state, None, [], _no_progress)


def test_serve_command_bad_input_is_one_line(capsys, tmp_path):
    from facestyle.cli import main

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [["--checkpoint", str(tmp_path / "nope")], ["--checkpoint", str(checkpoint), "--port", "70000"],
                 ["--checkpoint", str(checkpoint), "--port", str(port)],
                 ["--checkpoint", str(checkpoint), "--parser", str(tmp_path / "nope")]]
        for argv in cases:
            code = main(["serve", *argv])
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert code == 2 and len(err) == 1 and err[0].startswith("facestyle serve: error:"), (argv, err)
