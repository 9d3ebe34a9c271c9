"""Screenshots of the incident pages in a real headless Chromium: Debian's ``chromium`` driven by Playwright's
Python API (Playwright's own browser download is not used). Optional: the demo calls :func:`browser_missing` first
and says why it skips the screenshot; the browser tests use :func:`chromium_path` and :func:`launch_args`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}  # CSS pixels; the phone is a common 6.1" handset


def chromium_path() -> str | None:
    """``$CHROMIUM`` if set, else the first Chromium on the PATH."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if Path(given).exists() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_args() -> list[str]:
    """Chromium refuses its sandbox as root (CI containers): only then go without it."""
    return ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def browser_missing() -> str | None:
    """Why no screenshot can be taken here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install playwright)"
    if chromium_path() is None:
        return "no chromium binary found (apt-get install chromium, or set CHROMIUM)"
    return None


async def screenshot(url: str, shots: dict[str, Path]) -> None:
    """Open ``url`` once per viewport named in ``shots`` (``desktop``, ``phone``) and save a full-page PNG each."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=launch_args())
        try:
            for name, path in shots.items():
                width, height = VIEWPORTS[name]
                page = await browser.new_page(viewport={"width": width, "height": height})
                response = await page.goto(url)
                if response is None or response.status != 200:
                    raise RuntimeError(f"the page answered {response.status if response else 'nothing'}")
                path.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(path), full_page=True)
                await page.close()
        finally:
            await browser.close()
