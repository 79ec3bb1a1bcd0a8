"""Take the README screenshot of a page from the real server in headless Chromium.

    DGR_HOME=/path/to/workspace/with/a/finished/demo .venv/bin/python docs/make_screenshot.py safety_tax docs/safety_tax.png

Starts `streamlit run app.py` on a free local port with the given workspace, opens the page, waits for Streamlit
to finish running the script, and saves a full-width PNG.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(page: str, out: str) -> int:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                              "--disable-background-networking"])
            tab = browser.new_page(viewport={"width": 1500, "height": 1000})
            deadline = time.monotonic() + 60
            while True:
                try:
                    tab.goto(f"http://127.0.0.1:{port}/")  # the router runs first and registers the pages
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            tab.wait_for_selector("[data-testid='stSidebarNav']", timeout=120_000)
            time.sleep(5)
            tab.click(f"[data-testid='stSidebarNav'] a[href$='/{page}']")
            time.sleep(3)
            tab.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
            time.sleep(4)  # plotly draws after the script ends
            # Streamlit scrolls inside its own container: stretch the window to the content for a whole-page shot.
            height = tab.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
            tab.set_viewport_size({"width": 1500, "height": min(max(int(height), 900), 6000)})
            time.sleep(2)
            tab.screenshot(path=out)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:3]))
