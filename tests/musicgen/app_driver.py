"""Drives `musicgen app` in Debian's headless Chromium through ChromeDriver (Selenium):
the server started as a user starts it, and the page's fields, buttons and messages by
their element ids. Used by test_app_browser.py and scripts/app_screenshot.py."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Chromium on a machine without a network: no background connections, no GPU, no sandbox
# (the tests may run as root), a fresh profile each time.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage",
         # A microphone that plays a test tone, allowed without asking.
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(checkpoint, out, *extra: str, timeout: float = 180.0):
    """`musicgen app --checkpoint ... --port <free>` in a subprocess: yields (url, log
    path) once the page answers; stops it after."""
    port = free_port()
    log = Path(out).with_suffix(".log")
    args = [sys.executable, "-m", "musicgen.cli", "app", "--checkpoint", str(checkpoint),
            "--port", str(port), "--out", str(out), *extra]  # fmt: skip
    with open(log, "w") as sink:
        server = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"musicgen app exited: {log.read_text()[-2000:]}")
                with contextlib.suppress(OSError):
                    if urllib.request.urlopen(url, timeout=5).status == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"musicgen app did not answer in {timeout:g} s")
                time.sleep(0.5)
            yield url, log
        finally:
            server.terminate()
            server.wait(30)


@contextlib.contextmanager
def chromium(downloads: Path, size=(1400, 2200)):
    """A headless Chromium that saves downloads into `downloads`, without asking."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = f"--user-data-dir={tempfile.mkdtemp()}"
    for flag in (*FLAGS, profile, f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads),
                  "download.prompt_for_download": False},
    )  # fmt: skip
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The app's page in one tab of `driver`."""

    def __init__(self, driver, url: str, downloads: Path):
        self.driver, self.url, self.downloads = driver, url, Path(downloads)
        self.progress_seen: set[str] = set()  # the progress bar's texts seen while waiting

    def open(self) -> Page:
        self.driver.get(self.url)
        self.wait(lambda: self.find("#prompt textarea"), 60)
        return self

    def find(self, css: str):
        found = self.driver.find_elements(By.CSS_SELECTOR, css)
        return found[0] if found else None

    def wait(self, condition, timeout: float = 30.0):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(
            StaleElementReferenceException,)).until(lambda _: condition())  # fmt: skip

    def field(self, elem_id: str):
        return self.find(f"#{elem_id} textarea, #{elem_id} input")

    def value(self, elem_id: str) -> str:
        return self.field(elem_id).get_attribute("value")

    def type(self, elem_id: str, text: str) -> None:
        """Replaces a field's text as a user does (select all, type)."""
        box = self.field(elem_id)
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        if text:
            box.send_keys(text)

    def click(self, elem_id: str) -> None:
        self.find(f"#{elem_id}").click()

    def text(self, elem_id: str) -> str:
        element = self.find(f"#{elem_id}")
        return element.text if element is not None else ""

    def status(self) -> str:
        """The status line's own text (not the progress bar drawn over it)."""
        line = self.find("#status [data-testid=markdown]")
        return line.text if line is not None else ""

    def busy(self) -> str:
        """What the page's progress indicators say (a queue place, steps, a stage)."""
        texts = []
        for tracker in self.driver.find_elements(By.CSS_SELECTOR, "[data-testid=status-tracker]"):
            with contextlib.suppress(StaleElementReferenceException):
                texts.append(tracker.text)
        return " ".join(t for t in texts if t)

    def press(self, button: str, expect: str, timeout: float = 240.0) -> str:
        """Clicks `button` and waits for the status line to match `expect` (a regex);
        returns it. Notes the progress bar's texts meanwhile."""
        before = self.status()
        self.click(button)

        def done():
            for bar in self.driver.find_elements(By.CSS_SELECTOR, ".progress-level"):
                with contextlib.suppress(StaleElementReferenceException):
                    self.progress_seen.add(bar.text)
            now = self.status()
            return now != before and re.search(r"⚠|made \d", now)

        start = time.monotonic()
        self.wait(done, timeout)
        status = self.status()
        print(f"{button}: {time.monotonic() - start:.1f} s: {status}")
        assert re.search(expect, status), f"expected {expect!r}, the page says {status!r}"
        return status

    def upload(self, path: Path) -> None:
        """Puts a file into the clip's upload and waits for its player."""
        self._clear_clip()
        self.find("#clip button[aria-label='Upload file']").click()
        self.find("#clip input[type=file]").send_keys(str(path))
        self.wait(lambda: self.find("#clip button[aria-label='Play']"))

    def record(self, seconds: float) -> None:
        """Records `seconds` from the microphone into the clip, and waits for its player."""
        self._clear_clip()
        self.find("#clip button[aria-label='Record audio']").click()
        self.wait(lambda: self._button("#clip", "Record")).click()
        time.sleep(seconds)
        self.wait(lambda: self._button("#clip", "Stop")).click()
        self.wait(lambda: self.find("#clip button[aria-label='Play']"))

    def _button(self, within: str, text: str):
        found = self.driver.find_elements(By.CSS_SELECTOR, f"{within} button")
        return next((b for b in found if b.text == text), None)

    def _clear_clip(self) -> None:
        """Removes the clip there is (its player has a Play button)."""
        if self.find("#clip button[aria-label='Play']"):
            self.find("#clip button[aria-label='Clear']").click()
            self.wait(lambda: not self.find("#clip button[aria-label='Play']"))

    def pick(self, side: str, label: str) -> None:
        """Chooses the history entry starting `label` in compare A or B."""
        self.find(f"#pick-{side} input").click()

        def choose():  # the list may be redrawn under us: tried again until it holds still
            for option in self.driver.find_elements(By.CSS_SELECTOR, "[role=option]"):
                if option.text.startswith(label):
                    option.click()
                    return True
            return False

        self.wait(choose)

    def download(self, slot: int, timeout: float = 30.0) -> Path:
        """Clicks a result's 'Download WAV' and returns the file once written."""
        before = set(self.downloads.iterdir())
        self.click(f"result-{slot}-download")

        def written():
            new = [p for p in set(self.downloads.iterdir()) - before if p.suffix == ".wav"]
            return new[0] if new else None

        return self.wait(written, timeout)
