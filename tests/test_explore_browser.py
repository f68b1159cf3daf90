"""The explorer in a real browser: nestgan-explore serves the page on a free local port and headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium) uses it as a person would: the images in the page must be
nestgan.sample's pixels for the seeds typed, the interpolation slider must show the walk's frames, a run directory
must show its snapshots (and a new one while it trains), and bad input must be a message in the page with the
server still answering."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.keys import Keys

import nestgan
from nestgan.images import as_pixels, image_grid

from conftest import same_to_rounding

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "pretrained" / "celeba64-nest-cpu.safetensors"
# Debian's packages (tests/install_chromium.sh) put them in /usr/bin; elsewhere, whichever the PATH holds.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run directory: a tiny training with a snapshot at every tick."""
    from nestgan.config import TrainConfig
    from nestgan.training.loop import train

    tmp = tmp_path_factory.mktemp("explore-run")
    generator = {"arch": "nest", "z_dim": 16, "init_size": 4, "block_size": 4, "widths": [32, 16, 16],
                 "depths": [1, 1, 1], "heads": [2, 1, 1]}
    cfg = TrainConfig.from_sources({}, {}, {
        "resolution": 16, "generator": generator, "discriminator": {"channel_base": 128, "channel_max": 16},
        "batch": 16, "precision": "fp32", "kimg": 0.096, "tick_kimg": 0.032, "snap": 1, "threads": 1,
        "outdir": str(tmp / "runs"), "data": {"max_images": 64, "cache_dir": str(tmp / "cache")}})
    return train(cfg)


@contextlib.contextmanager
def explorer(*args: str, log: Path) -> Iterator[str]:
    """`python -m nestgan.explore ARGS` on a free port, as users start it; yields its URL."""
    for _ in range(3):  # another process may take the port between free_port() and the bind: try another
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "nestgan.explore", *args, "--port", str(port),
                                     "--no-browser"], stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        if proc.poll() is None:
            break
    else:
        raise RuntimeError(f"the explorer did not start: {log.read_text()[-2000:]}")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def chromium(profile: Path, size: str = "1400,1800") -> Iterator[Any]:
    """Headless Debian chromium through Selenium, with the flags that keep it off the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), (
        "the browser test needs Debian's chromium and chromium-driver: bash tests/install_chromium.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={size}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("explore-server") / "server.log"
    # One thread on both sides: the page's pixels and the test's are then computed alike, to the bit.
    with explorer("--ckpt", str(SHIPPED), "--run", str(run_dir), "--device", "cpu", "--threads", "1", log=log) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def wait_for(condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the page is still rendering: the element is not there yet
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def image_src(driver, elem_id: str) -> str | None:
    images = driver.find_elements("css selector", f"#{elem_id} img")
    return images[0].get_attribute("src") if images else None


def pixels_at(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=10) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def new_image(driver, elem_id: str, old: str | None) -> np.ndarray:
    src = wait_for(lambda: (s := image_src(driver, elem_id)) and s != old and s, f"a new image in #{elem_id}")
    return pixels_at(src)


def type_into(driver, elem_id: str, text: str) -> None:
    box = driver.find_element("css selector", f"#{elem_id} textarea, #{elem_id} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, Keys.ENTER)


def open_tab(driver, name: str) -> None:
    tab = driver.find_element("xpath", f"//button[@role='tab' and normalize-space()='{name}']")
    tab.click()


def message(driver, elem_id: str) -> str:
    return driver.find_element("css selector", f"#{elem_id}").text


def test_the_page_draws_the_seeds_typed_walks_between_them_and_shows_a_run(server, browser, run_dir, one_thread):
    G = nestgan.load_generator(SHIPPED)
    browser.get(server)

    # Generator tab: the first grid is seeds 0-15, then the seed typed, pixel for pixel as nestgan.sample draws them.
    first = new_image(browser, "grid", None)
    assert np.array_equal(first, image_grid(as_pixels(nestgan.sample(G, range(16)))))
    assert "nest, 64 px" in message(browser, "card")
    old = image_src(browser, "grid")
    type_into(browser, "seeds", "7")
    assert np.array_equal(new_image(browser, "grid", old), as_pixels(nestgan.sample(G, [7]))[0])

    # A bad checkpoint path: one message in the page, the picture kept, and the server still draws afterwards.
    type_into(browser, "ckpt", "no/such/model.pt")
    wait_for(lambda: "error:" in message(browser, "grid-error"), "the error message")
    assert "no/such/model.pt" in message(browser, "grid-error") and "Traceback" not in browser.page_source
    old = image_src(browser, "grid")
    type_into(browser, "ckpt", str(SHIPPED))
    type_into(browser, "seeds", "3,9")
    assert np.array_equal(new_image(browser, "grid", old), image_grid(as_pixels(nestgan.sample(G, [3, 9]))))
    wait_for(lambda: message(browser, "grid-error") == "", "the error message to clear")

    # Interpolate tab: walk from seed 3 to seed 9; the frame slider shows the walk's frames, the ends are the seeds'.
    open_tab(browser, "Interpolate")
    type_into(browser, "seed-a", "3")
    strip = new_image(browser, "strip", None)
    type_into(browser, "seed-b", "9")
    strip = new_image(browser, "strip", image_src(browser, "strip"))
    ends = as_pixels(nestgan.sample(G, [3, 9]))
    assert strip.shape == (64, 8 * 64, 3)
    assert same_to_rounding(strip[:, :64], ends[0]) and same_to_rounding(strip[:, -64:], ends[1])
    old = image_src(browser, "frame")
    browser.find_element("css selector", "#where input[type=range]").send_keys(Keys.END)  # the slider to its end
    assert same_to_rounding(new_image(browser, "frame", old), ends[1])
    assert wait_for(lambda: browser.find_elements("css selector", "#gif a"), "the GIF link")

    # Project tab: an uploaded face, projected in the fewest steps; the target half is the upload as G sees it, and
    # the walk from the projection ends at the seed asked for.
    open_tab(browser, "Project")
    face = run_dir.parent / "face.png"
    Image.fromarray(as_pixels(nestgan.sample(G, [1000]))[0]).save(face)
    browser.find_element("css selector", "#upload input[type=file]").send_keys(str(face))
    browser.find_element("xpath", "//div[contains(@class, 'block')][.//span[text()='optimisation steps']]"
                                  "//input[@type='range']").send_keys(Keys.HOME)
    browser.find_element("css selector", "#project").click()
    pair = new_image(browser, "side-by-side", None)
    assert pair.shape == (64, 128, 3) and np.array_equal(pair[:, :64], np.asarray(Image.open(face)))
    assert "PSNR" in message(browser, "projection-note")
    walk = new_image(browser, "projection-walk", None)
    assert same_to_rounding(walk[:, -64:], as_pixels(nestgan.sample(G, [0]))[0])
    assert same_to_rounding(walk[:, :64], pair[:, 64:])

    # Run tab: the newest snapshot's fixed-z grid; a snapshot written while the page is open appears by itself.
    open_tab(browser, "Run")
    grids = sorted(run_dir.glob("fakes0*.png"))
    assert np.array_equal(new_image(browser, "run-grid", None), np.asarray(Image.open(grids[-1]).convert("RGB")))
    newer = run_dir / "fakes000000.128.png"
    Image.fromarray(255 - np.asarray(Image.open(grids[0]).convert("RGB"))).save(newer)
    try:
        shown = new_image(browser, "run-grid", image_src(browser, "run-grid"))
        assert np.array_equal(shown, np.asarray(Image.open(newer)))
    finally:
        newer.unlink()
    type_into(browser, "run-path", str(run_dir / "missing"))
    wait_for(lambda: "run directory not found" in message(browser, "run-error"), "the run error message")

