"""The web editor in a real browser: Playwright driving Debian's chromium against ``facestyle serve``.

Skips (with the reason) when gradio, playwright or /usr/bin/chromium is missing; ``make test`` installs
them (``scripts/install-browser.sh``). Screenshots go to ``$FACESTYLE_TEST_ARTIFACTS`` (default
``tests/artifacts/``); their paths are printed.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
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
    EDITOR_SIDE,
    ServerLimits,
    _App,
    labels_from_painting,
    read_label_upload,
    read_upload,
    strokes_from_layers,
    without_paths,
)
from facestyle.app.sessions import SessionStore  # noqa: E402
from facestyle.errors import InputError  # noqa: E402

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


def run_painted_edit(page, paint, button: str, text: str, tries: int = 3) -> str:
    """Paint with ``paint()``, click ``button`` and return the status once it says ``text``.

    On a loaded machine the image editor can drop a stroke made right after its canvas appears; the server then
    answers with its "paint ... first" message, and the stroke is painted again (at most ``tries`` times). Any
    other message fails the test with its text.
    """
    toasts = page.locator("[data-testid=toast-body]")

    def close_toasts() -> None:  # so that a message on screen is this click's
        while toasts.count():
            page.locator("[data-testid=toast-close]").first.click(force=True)  # it may still be sliding in
            page.wait_for_timeout(200)

    for _ in range(tries):
        paint()
        page.wait_for_timeout(300)
        close_toasts()
        page.click(button)
        page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)"
                               " || document.querySelector('[data-testid=toast-body]')", arg=text)
        status = page.locator("#status").inner_text()
        if text in status:
            return status
        message = toasts.first.inner_text()
        assert "first" in message, message
    raise AssertionError(f"the page dropped the painted stroke {tries} times: {message}")


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

    # "Show before" shows the photo the result was made from; the next result unticks it and is shown
    toggle = page.locator("#before-after input")
    shown = result_src(page)  # read before ticking: the photo can arrive before a read after it
    toggle.check()
    before = wait_for_new_result(page, shown)
    assert np.abs(before.astype(float) - target).mean() < 3
    shown = result_src(page)
    page.click("#transfer-button")
    after = wait_for_new_result(page, shown)
    assert np.abs(after.astype(float) - target).mean() > 5
    page.wait_for_function("() => !document.querySelector('#before-after input').checked")


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

    def paint():  # a stroke across the hair, where the canvas is now (a message may have scrolled the page)
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - box["height"] * 0.2, cy - box["height"] * 0.38)
        page.mouse.down()
        page.mouse.move(cx + box["height"] * 0.2, cy - box["height"] * 0.38, steps=20)
        page.mouse.up()

    text = run_painted_edit(page, paint, "#color-button", "Recoloured")
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


def _image(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


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
    first = _image(first)  # results are files the request wrote
    again, other = (_image(app.sample(target, "hair", seed, _no_progress)[0]) for seed in (1, 2))
    assert np.array_equal(first, again) and not np.array_equal(first, other) and "seed 1" in text
    moved, still = (_image(app.finetune(target, "skin", step, 0, _no_progress)[0]) for step in (1.5, 0.0))
    assert moved.shape == still.shape == (128, 128, 3) and not np.array_equal(moved, still)


def test_without_style_networks_those_controls_are_off(tmp_path, files):
    from facestyle.editor.editor import Editor
    from facestyle.errors import InputError

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    app = _App(Editor.from_pretrained(checkpoint, parser="none"), ServerLimits())  # no parser: labels must come
    assert app.mapping_regions == [] and app.flow_regions == []
    with pytest.raises(InputError, match="upload a target photo first"):
        app.transfer({}, {}, ["hair"], True, progress=_no_progress)
    state, overlay, shape_canvas, color_canvas, note = app.load(str(files["target"]), None, "target", _no_progress)
    assert app.sessions.photo_of(state).labels is None and "upload a label map" in note and shape_canvas is None
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


# ----------------------------------------------------------------------- bounded sessions, own outputs


class _Clock:
    """A settable monotonic clock for the session store."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _uploads(files, folder: Path, *names: str) -> list[str]:
    """Copies of the test files in a folder standing for Gradio's upload cache (the store deletes those)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        shutil.copy(files[name], folder / f"{name}.png")
        out.append(str(folder / f"{name}.png"))
    return out


def test_sessions_end_by_time_to_live_and_by_capacity_and_release_memory_and_files(files, tmp_path):
    from facestyle.editor.editor import Editor

    clock, uploads = _Clock(), tmp_path / "upload-cache"
    store = SessionStore(root=tmp_path / "sessions", upload_root=uploads, ttl=60, capacity=2, clock=clock)
    app = _App(Editor.from_pretrained(tiny_checkpoint(tmp_path / "ckpt")), ServerLimits(), store)
    a_files = _uploads(files, uploads / "a", "target", "target_labels", "reference", "reference_labels")
    target, overlay, shape_canvas, color_canvas, _ = app.load(*a_files[:2], "target", _no_progress, session="a")
    reference, *_ = app.load(*a_files[2:], "reference", _no_progress, session="a")
    result, result_state, _ = app.transfer(target, reference, ["hair"], True, progress=_no_progress)
    photo = store.photo_of(target)
    assert photo.labels.dtype == np.uint8 and photo.labels.shape == (128, 128)  # not int64
    assert _image(photo.path).shape == (128, 128, 3)  # the full-size original, on disk
    folder = store.session("a").folder
    for path in (result, overlay, shape_canvas["background"], color_canvas["background"]):
        assert Path(path).is_file() and Path(path).is_relative_to(folder)
    assert store.photo_of(result_state, "result").labels is photo.labels  # shared, not copied

    clock.now += 30  # "a" is older than "b" and "c": the third session ends it
    for name in ("b", "c"):
        app.load(*_uploads(files, uploads / name, "target", "target_labels"), "target", _no_progress, session=name)
    assert len(store) == 2 and "a" not in store and not folder.exists()
    assert not any(Path(p).exists() for p in a_files)  # its uploads went with it
    with pytest.raises(InputError, match="session has ended"):
        app.transfer(target, reference, ["hair"], True, progress=_no_progress)

    clock.now += 31  # "b" and "c" are 31 s old: still within the time to live
    assert store.expire() == 0 and len(store) == 2
    clock.now += 30
    assert store.expire() == 2 and len(store) == 0
    assert not any(store.root.iterdir()) and not any(uploads.rglob("*.png"))

    live = SessionStore(root=tmp_path / "live", ttl=0.2)  # the background thread ends it, with a real clock
    live.session("x", create=True)._folder("photos")
    deadline = time.monotonic() + 30
    while (len(live) or any(live.root.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(live) == 0 and not any(live.root.iterdir())
    live.close()
    store.close()
    assert not store.root.exists()


def test_a_large_photo_is_held_at_the_working_size_with_a_uint8_label_map(editor_app, tmp_path):
    photo, labels = drawn_face(3, 1000)
    photo, labels = photo[:800], labels[:800]  # 1000x800
    Image.fromarray(photo).save(tmp_path / "p.png")
    Image.fromarray(labels, "L").save(tmp_path / "l.png")
    state, overlay, shape_canvas, color_canvas, _ = editor_app.load(str(tmp_path / "p.png"), str(tmp_path / "l.png"),
                                                                    "target", _no_progress)
    held = editor_app.sessions.photo_of(state)
    assert held.preview.shape == (round(800 * EDITOR_SIDE / 1000), EDITOR_SIDE, 3)
    assert held.labels.dtype == np.uint8 and np.array_equal(held.labels, labels)
    assert held.size == (800, 1000) and np.array_equal(_image(held.path), photo)  # the original, byte for byte
    for path in (overlay, shape_canvas["background"], color_canvas["background"]):
        assert max(Image.open(path).size) == EDITOR_SIDE
    reference, *_ = editor_app.load(str(tmp_path / "p.png"), str(tmp_path / "l.png"), "reference", _no_progress)
    result, _, _ = editor_app.transfer(state, reference, ["hair"], True, progress=_no_progress)
    assert _image(result).shape == (800, 1000, 3)  # results come back at the photo's own size


def test_error_messages_name_no_server_path(files, tmp_path):
    assert "/srv" not in without_paths("/srv/a b/x/labels.png: value 40 is outside")
    assert without_paths("cannot read /tmp/gradio/0a1b/photo.png (corrupt)") == "cannot read photo.png (corrupt)"
    assert without_paths("C:\\Users\\me\\photo.jpg: bad") == "photo.jpg: bad"
    assert without_paths("3/4 of http://127.0.0.1:7860/a/b") == "3/4 of http://127.0.0.1:7860/a/b"
    bad = tmp_path / "bad_labels.png"
    Image.fromarray(np.full((128, 128), 200, np.uint8), "L").save(bad)
    with pytest.raises(InputError) as caught:
        read_label_upload(bad, CELEBAMASK_HQ, (128, 128), ServerLimits(), "the target label map")
    assert "the target label map" in str(caught.value) and str(tmp_path) not in str(caught.value)


ABSOLUTE = re.compile(r"(^|[\s'\"(=])/[^\s/]+/")


@pytest.fixture()
def live_server(tmp_path):
    """``serve`` in this process (so that the test sees its session store), on a free loopback port."""
    from facestyle.app.server import serve

    clock = _Clock()
    from gradio import utils as gradio_utils

    cache = gradio_utils.get_upload_folder()
    store = SessionStore(root=cache, upload_root=cache, ttl=600, capacity=16, clock=clock)
    limits = ServerLimits(max_side=MAX_SIDE, max_upload_mb=MAX_UPLOAD_MB, concurrency=2)
    port = _free_port()
    demo = serve(tiny_checkpoint(tmp_path / "ckpt"), port=port, limits=limits, block=False, quiet=True, sessions=store)
    try:
        yield f"http://127.0.0.1:{port}/", store, clock
    finally:
        demo.close()
        store.close()


def _fetch(root: str, file_data) -> bytes:
    data = file_data if isinstance(file_data, dict) else vars(file_data)
    url = data.get("url") or f"{root}gradio_api/file={data['path']}"
    with urllib.request.urlopen(url if url.startswith("http") else root + url.lstrip("/"), timeout=60) as response:
        return response.read()


def test_concurrent_identical_requests_get_whole_files_of_their_own_and_sessions_expire(live_server, files):
    """Six tabs transfer the same regions between the same photos at once: six results, each at its own
    path and whole (before, results went to content-hashed paths that a concurrent request rewrote)."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, store, clock = live_server
    clients = [Client(url, verbose=False, download_files=False) for _ in range(6)]
    bad = files["target"].parent / "out_of_range_labels.png"
    Image.fromarray(np.full((128, 128), 200, np.uint8), "L").save(bad)
    not_an_image = files["target"].parent / "not_an_image.png"
    not_an_image.write_text("hello")
    messages = []  # bad input first: a later identical upload would be another session's file
    for inputs in ((files["target"], bad), (not_an_image, None)):
        with pytest.raises(AppError) as caught:
            clients[0].predict(*(handle_file(p) if p else None for p in inputs), api_name="/load_target")
        messages.append(str(caught.value))
    assert "the target label map" in messages[0] and "outside" in messages[0]
    assert not any(ABSOLUTE.search(m) for m in messages), messages
    for client in clients:
        client.predict(handle_file(files["target"]), handle_file(files["target_labels"]), api_name="/load_target")
        client.predict(handle_file(files["reference"]), handle_file(files["reference_labels"]),
                       api_name="/load_reference")
    assert len(store) == 6
    held = [store.session(i).photos["target"] for i in store.ids()]
    assert all(p.labels.dtype == np.uint8 for p in held)
    uploads = [u for p in held for u, _ in p.uploads]
    assert uploads and all(u.exists() for u in uploads)

    barrier, results, errors = threading.Barrier(len(clients)), [None] * len(clients), []

    def transfer(i: int) -> None:
        try:
            barrier.wait()
            results[i] = clients[i].predict(["skin", "hair"], True, api_name="/transfer")
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=transfer, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    images = [result[0] for result in results]
    paths = {(i if isinstance(i, dict) else vars(i))["path"] for i in images}
    assert len(paths) == len(clients)  # one path per request
    decoded = []
    for image in images:
        with Image.open(io.BytesIO(_fetch(url, image))) as im:
            im.load()  # a truncated PNG fails here
            decoded.append(np.asarray(im.convert("RGB")))
    assert all(d.shape == (128, 128, 3) and np.array_equal(d, decoded[0]) for d in decoded)

    folders = [store.session(i).folder for i in store.ids()]
    clock.now += 601  # past the time to live: every session ends, its photos and files go
    assert store.expire() == len(folders) and len(store) == 0
    assert not any(f.exists() for f in folders) and not any(u.exists() for u in uploads)
