"""The web UI in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by selenium.

One session: load the page, send a message with an audio file and get a reply; upload a bad file and
see one clear message (no error badges, history still shown); send again and get a reply; two replies
to the same message without a seed differ. Set ``M2UGEN_SCREENSHOT_DIR`` to keep the screenshots of
each step (docs/img/ holds the ones shown in docs/usage.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2ugen.assistant import DEMO_LABEL, Assistant

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("gradio")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")]
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1500")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(browser, server URL) with the demo model's UI loaded."""
    from selenium.webdriver.chrome.service import Service

    from m2ugen.app import serve

    port = _free_port()
    app = serve(Assistant.tiny(), port=port, block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        yield browser
    finally:
        browser.quit()
        app.close()


def _wait(condition, what: str, timeout: float = 120.0):
    """The first true value of ``condition()``; the page re-rendering under it is retried."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _bot_messages(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    def texts() -> list[str] | None:
        return [m.text for m in browser.find_elements(By.CSS_SELECTOR, '#chat [data-testid="bot"]') if m.text]

    return _wait(lambda: (texts(),), "the chat")[0]


def _send(browser, text: str) -> str:
    """Type ``text`` (unless already there), press Send, and return the new bot message."""
    from selenium.webdriver.common.by import By

    before = len(_bot_messages(browser))
    box = browser.find_element(By.CSS_SELECTOR, "#message textarea")
    if box.get_attribute("value") != text:
        box.clear()
        box.send_keys(text)
    browser.find_element(By.ID, "send").click()
    _wait(lambda: len(_bot_messages(browser)) > before, "a reply")
    return _bot_messages(browser)[before]


def _upload_audio(browser, path: Path) -> None:
    from selenium.webdriver.common.by import By

    _wait(lambda: browser.find_element(By.CSS_SELECTOR, "#audio input[type=file]").send_keys(str(path)) or True,
          "the audio input")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, '#audio [data-testid="download-link"]'), "the upload")


def _set_number(browser, elem_id: str, value: float) -> None:
    """Open the Options and type ``value`` into a slider's number box."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def toggle() -> bool:
        browser.find_element(By.CSS_SELECTOR, "#options button.label-wrap").click()
        return True

    _wait(toggle, "the Options")
    box = _wait(lambda: browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]"), elem_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)
    _wait(lambda: box.get_attribute("value") == str(value), f"{elem_id} = {value}")
    _wait(toggle, "the Options")


def _error_badges(browser) -> int:
    from selenium.webdriver.common.by import By

    return len(browser.find_elements(By.CSS_SELECTOR, ".toast-body.error, .error .status-tracker, span.error"))


def test_chat_bad_upload_recovery_and_random_seed_in_a_real_browser(page, tmp_path, capfd):
    from selenium.webdriver.common.by import By

    shots = Path(os.environ.get("M2UGEN_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser = page
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#message textarea"), "the page")
    browser.save_screenshot(str(shots / "ui-1-loaded.png"))
    _set_number(browser, "max-new-tokens", 16)  # short replies keep the test fast

    # 1. a message with an audio file gets a reply
    tune = tmp_path / "tune.wav"
    sf.write(tune, 0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000), 24000)
    _upload_audio(browser, tune)
    assert _send(browser, "What instruments are playing?").startswith(DEMO_LABEL)
    browser.save_screenshot(str(shots / "ui-2-reply.png"))

    # 2. a bad upload: one message in the chat naming the user's file; no error badges; history kept
    capfd.readouterr()
    bad = tmp_path / "my broken song.wav"
    bad.write_text("this is not audio")
    _upload_audio(browser, bad)
    message = _send(browser, "Describe this one")
    assert message.startswith("Could not do that: my broken song.wav:") and "/tmp" not in message
    assert _error_badges(browser) == 0
    assert len(_bot_messages(browser)) == 2  # the first reply is still shown
    assert not browser.find_elements(By.CSS_SELECTOR, '#audio [data-testid="download-link"]')  # upload cleared
    log = capfd.readouterr().err
    assert log.count("user error") == 1 and "Traceback" not in log
    browser.save_screenshot(str(shots / "ui-3-bad-upload.png"))

    # 3. Send works on the next try (the text was kept in the box)
    assert browser.find_element(By.CSS_SELECTOR, "#message textarea").get_attribute("value") == "Describe this one"
    assert _send(browser, "Describe this one").startswith(DEMO_LABEL)
    browser.save_screenshot(str(shots / "ui-4-sent-again.png"))

    # 4. without a seed, the same message in a fresh chat gets a different reply
    browser.find_element(By.ID, "clear").click()
    _wait(lambda: not _bot_messages(browser), "the cleared chat")
    first = _send(browser, "Tell me about jazz")
    browser.find_element(By.ID, "clear").click()
    _wait(lambda: not _bot_messages(browser), "the cleared chat")
    second = _send(browser, "Tell me about jazz")
    assert first.startswith(DEMO_LABEL) and second.startswith(DEMO_LABEL) and first != second
