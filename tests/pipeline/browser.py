"""A headless Chromium for the tests that look at the web UIs (the MLflow UI, optuna-dashboard)
the way a person does: open a page, wait until the React app has rendered the expected text,
keep a screenshot of it.

Debian's ``chromium`` and ``chromium-driver`` (installed by ``.ci/setup``), driven by
selenium; both paths are given explicitly, so Selenium Manager never looks for (or downloads)
a browser or a driver."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = "LATENTOPS_SCREENSHOTS"  # a folder to copy the screenshots to, for a person to look at


class PageCheckFailed(AssertionError):
    """A page did not show what was expected; the message names the screenshot of it."""


class Browser:
    """A headless Chromium (selenium's driver) that saves a PNG of every page it checks in
    ``shots``."""

    def __init__(self, driver, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.taken: list[Path] = []

    def screenshot(self, name: str) -> Path:
        """Save the whole window as ``shots/<name>.png``; its path."""
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        return path

    def text(self) -> str:
        """The page's visible text (empty while the page is being replaced)."""
        from selenium.common.exceptions import WebDriverException

        try:
            return self.driver.find_element("tag name", "body").text
        except WebDriverException:
            return ""

    def wait_for(self, name: str, texts: Sequence[str], timeout: float = 60.0) -> str:
        """Wait until the page shows every one of ``texts``; screenshot it as ``name`` either
        way; the page's text. Fails naming what is missing, the screenshot and the start of the
        page's text."""
        deadline = time.monotonic() + timeout
        while True:
            shown = self.text()
            missing = [t for t in texts if t not in shown]
            if not missing:
                time.sleep(0.5)  # let charts finish drawing before the picture
                self.screenshot(name)
                return self.text()
            if time.monotonic() > deadline:
                shot = self.screenshot(name)
                raise PageCheckFailed(f"{self.driver.current_url} did not show {missing} within {timeout:g} s "
                                      f"(screenshot: {shot}); the page shows:\n{shown[:2000]}")
            time.sleep(0.5)

    def open(self, url: str, name: str, texts: Sequence[str], timeout: float = 60.0) -> str:
        """Go to ``url`` and :meth:`wait_for` ``texts`` there (screenshot ``name``)."""
        self.driver.get(url)
        return self.wait_for(name, texts, timeout)

    def click(self, text: str, timeout: float = 30.0) -> None:
        """Click the first visible element whose own text is exactly ``text`` (a tab, a link, a
        button), waiting for it to appear."""
        from selenium.common.exceptions import WebDriverException

        xpath = f"//*[normalize-space(text())={_literal(text)}]"
        deadline = time.monotonic() + timeout
        while True:
            for element in self.driver.find_elements("xpath", xpath):
                try:
                    if element.is_displayed():
                        element.click()
                        return
                except WebDriverException:
                    pass  # replaced while React re-rendered: look again
            if time.monotonic() > deadline:
                shot = self.screenshot("click-failed")
                raise PageCheckFailed(f"{self.driver.current_url}: nothing visible reads {text!r} to click within "
                                      f"{timeout:g} s (screenshot: {shot})")
            time.sleep(0.5)

    def type_into(self, placeholder: str, text: str, timeout: float = 30.0) -> None:
        """Type ``text`` into the input whose placeholder is ``placeholder`` (e.g. a search
        box), waiting for it to appear."""
        deadline = time.monotonic() + timeout
        while True:
            boxes = [b for b in self.driver.find_elements("css selector", f"input[placeholder={_literal(placeholder)}]")
                     if b.is_displayed()]
            if boxes:
                boxes[0].clear()
                boxes[0].send_keys(text)
                return
            if time.monotonic() > deadline:
                shot = self.screenshot("type-failed")
                raise PageCheckFailed(f"{self.driver.current_url}: no input {placeholder!r} within {timeout:g} s "
                                      f"(screenshot: {shot})")
            time.sleep(0.5)

    def close_dialogs(self, timeout: float = 10.0) -> int:
        """Close the pop-ups over the page (such as an announcement): click each dialog's Close
        button, waiting up to ``timeout`` for one to appear; how many were closed."""
        from selenium.common.exceptions import WebDriverException

        closed, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            buttons = [b for b in self.driver.find_elements("css selector", "[role='dialog'] [aria-label='Close']")
                       if b.is_displayed()]
            if not buttons:
                if closed:
                    break
                time.sleep(0.5)
                continue
            try:
                buttons[0].click()
                closed += 1
            except WebDriverException:
                pass
            time.sleep(0.5)
        return closed

    def images(self, min_width: int = 100) -> int:
        """How many images on the page have loaded at least ``min_width`` pixels wide (a
        plot, not an icon)."""
        return int(self.driver.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth >= arguments[0]).length",
            min_width))

    def count(self, css: str) -> int:
        """How many elements match the CSS selector ``css`` (e.g. ``canvas``, ``svg``)."""
        return len(self.driver.find_elements("css selector", css))


def _literal(text: str) -> str:
    """``text`` as an XPath string literal."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in text.split("'")) + ")"


@contextlib.contextmanager
def chromium(shots: Path, width: int = 1600, height: int = 1200) -> Iterator[Browser]:
    """A headless Chromium for the block, its screenshots in ``shots`` (created), copied also
    to ``$LATENTOPS_SCREENSHOTS`` when that is set, pass or fail. Skips where Debian's chromium
    or chromium-driver is missing."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is missing: .ci/setup installs Debian's {package}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    shots.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(shots / "chromedriver.log"))
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, were it ever asked: never download
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    browser = Browser(driver, shots)
    try:
        yield browser
    finally:
        driver.quit()
        copy = os.environ.get(SCREENSHOTS)
        if copy:
            Path(copy).mkdir(parents=True, exist_ok=True)
            for path in browser.taken:
                shutil.copy(path, Path(copy) / path.name)
