"""The page at `/` in a real browser: Debian's headless Chromium driven by
its chromedriver (selenium), against a real server with a token. One browser
session and one server for the module; the tests run in file order, as a
person would use the page: asked for the token, an oversized file refused,
a 64 px 10-iteration job watched to its result and downloaded, a long job
cancelled, and the page photographed at 360 px and 1440 px wide.

Without Chromium these tests skip, except under CI=true, where they fail:
.ci/run installs chromium and chromium-driver.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.support.images import png_bytes
from tests.support.server import ServerHandle, free_port, running_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
TOKEN = "page-token-0123456789abcdef"
WAIT = 90.0


def _chromium_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    tokens = tmp_path_factory.mktemp("page") / "tokens"
    tokens.write_text(f"painter:{TOKEN}\n")
    with running_server(http_port=free_port(), auth_token_file=str(tokens), max_message_mb=1.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="stylize-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1440,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    folder = tmp_path_factory.mktemp("images")
    files = {
        "content": png_bytes(96, 72, seed=1),
        "style": png_bytes(64, 64, seed=2),
        "big": os.urandom(1536 * 1024),  # over the server's 1 MiB per request
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.png"
        paths[name].write_bytes(data)
    return paths


def _wait(driver: Any, condition: Any, what: str, timeout: float = WAIT, errors: bool = False) -> Any:
    """condition(driver)'s first true value; fails at once on an error message unless `errors`."""
    from selenium.webdriver.support.ui import WebDriverWait

    def check(d: Any) -> Any:
        if not errors and d.find_element("id", "message").get_attribute("class") == "error":
            raise AssertionError(f"{what}: the page shows an error: {_text(d, 'message')!r}")
        return condition(d)

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except AssertionError:
        raise
    except Exception as exc:
        message = driver.find_element("id", "message").text
        raise AssertionError(f"{what}: not within {timeout} s (page says {message!r})") from exc


def _text(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def _fill(driver: Any, name: str, value: str) -> None:
    field = driver.find_element("name", name)
    field.clear()
    field.send_keys(value)


def test_the_page_asks_for_the_missing_token(browser: Any, page_server: ServerHandle) -> None:
    browser.get(f"http://127.0.0.1:{page_server.server.http_port}/")
    _wait(browser, lambda d: d.find_element("id", "token-box").is_displayed(), "the token prompt", errors=True)
    assert "needs an access token" in _text(browser, "message")
    browser.find_element("id", "token").send_keys(TOKEN)
    browser.find_element("id", "token-save").click()
    _wait(browser, lambda d: not d.find_element("id", "token-box").is_displayed(), "the token accepted")
    assert browser.execute_script("return sessionStorage.getItem('stylize.token')") == TOKEN
    assert browser.find_element("id", "weights-warning").is_displayed()  # random weights, said on the page


def test_an_oversized_file_gets_a_clear_message(browser: Any, images: dict[str, pathlib.Path]) -> None:
    browser.find_element("name", "content").send_keys(str(images["big"]))
    browser.find_element("name", "style").send_keys(str(images["style"]))
    browser.find_element("id", "start").click()
    message = _wait(
        browser, lambda d: "too large" in _text(d, "message") and _text(d, "message"), "a size message", errors=True
    )
    assert "big.png" in message and "1.0 MB" in message


def test_a_job_is_watched_to_its_result_and_downloaded(browser: Any, images: dict[str, pathlib.Path]) -> None:
    browser.refresh()
    _wait(browser, lambda d: d.execute_script("return document.readyState") == "complete", "the page")
    browser.find_element("name", "content").send_keys(str(images["content"]))
    browser.find_element("name", "style").send_keys(str(images["style"]))
    _fill(browser, "size", "64")
    _fill(browser, "iterations", "10")
    form = browser.find_element("id", "job-form")
    assert browser.find_element("css selector", "#job-form button[type=submit]").get_attribute("id") == "start"
    assert form.find_element("name", "color_control").tag_name == "select"
    form.find_element("css selector", "#style_loss option[value=STYLE_LOSS_MEAN_COV]").click()
    browser.find_element("id", "start").click()
    _wait(browser, lambda d: d.find_element("id", "download").is_displayed(), "the result")
    previews = int(browser.find_element("id", "preview").get_attribute("data-previews") or 0)
    assert previews >= 1
    assert browser.find_element("id", "preview").get_attribute("src").startswith("blob:")
    assert "Done: 10 iterations" in _text(browser, "message")
    # The server ran it with the statistics chosen on the page: its started frame's resolved options say so.
    assert browser.find_element("id", "message").get_attribute("data-style-loss") == "STYLE_LOSS_MEAN_COV"
    drawn = browser.execute_script(
        "const c = document.getElementById('loss'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 100) n++; return n;"
    )
    assert drawn > 50, "no loss curve on the canvas"
    browser.find_element("id", "download").click()
    deadline = time.monotonic() + 30
    found: list[pathlib.Path] = []
    while time.monotonic() < deadline and not found:
        found = [p for p in browser.downloads.iterdir() if p.suffix == ".png"]
        time.sleep(0.1)
    assert found, "the download did not arrive"
    with Image.open(found[0]) as image:
        assert max(image.size) == 64


def test_screenshots_at_phone_and_desktop_widths(browser: Any) -> None:
    """docs/http-page-{360,1440}.png: with STYLIZE_SCREENSHOTS=docs they are written there."""
    out = pathlib.Path(os.environ.get("STYLIZE_SCREENSHOTS") or tempfile.mkdtemp(prefix="stylize-shots-"))
    out.mkdir(parents=True, exist_ok=True)
    for width, height in ((1440, 900), (360, 1500)):
        browser.set_window_size(width, height)
        inner = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
        assert inner[1] <= inner[0], f"the page scrolls sideways at {width} px: {inner}"
        path = out / f"http-page-{width}.png"
        browser.save_screenshot(str(path))
        with Image.open(path) as image:
            assert image.size[0] >= width - 20
    browser.set_window_size(1440, 1000)


def test_a_running_job_is_cancelled(browser: Any, images: dict[str, pathlib.Path]) -> None:
    browser.refresh()
    _wait(browser, lambda d: d.execute_script("return document.readyState") == "complete", "the page")
    browser.find_element("name", "content").send_keys(str(images["content"]))
    browser.find_element("name", "style").send_keys(str(images["style"]))
    _fill(browser, "size", "64")
    _fill(browser, "iterations", "2000")
    browser.find_element("id", "start").click()
    _wait(browser, lambda d: "Iteration" in _text(d, "status"), "the job running")
    browser.find_element("id", "cancel").click()
    _wait(browser, lambda d: "cancelled" in _text(d, "message"), "the cancellation", errors=True)
    assert not browser.find_element("id", "download").is_displayed()
    assert browser.find_element("id", "start").is_enabled()
