"""Browser test: headless Chromium drives the real Streamlit server, page by page, and launches one small job.

    .venv/bin/pytest -m browser tests/test_browser.py

A session fixture starts `streamlit run app.py` on a free port with DGR_HOME set to a temporary workspace (demo
datasets prepared, models folder linked to the repo's cache/models) and waits for /_stcore/health. The test opens
every page through the sidebar navigation, checks each shows a title and no exception box, and saves a full-page
screenshot per page into test-artifacts/ (git-ignored). Then it selects the fake backend in the sidebar, launches a
tiny evaluation on the Evaluate page, waits for the job to finish and checks the page shows its results.

Playwright comes from pip; the browser is Debian's chromium (/usr/bin/chromium; `playwright install` is never run:
it downloads browsers). Without either, the test is skipped, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("DGR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
JOB_TIMEOUT_S = 120
RENDER_TIMEOUT_MS = 30_000


def _missing() -> str | None:
    """Why this machine cannot run the browser test, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)"
    if not (REPO / "app.py").is_file():
        return "app.py does not exist yet"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _workspace(root: Path) -> Path:
    """A fresh DGR_HOME with the demo datasets and the repo's converted models (linked, as the ws fixture does)."""
    from dgr_core.data.demo import ensure_demo_datasets
    from dgr_core.workspace import Workspace

    home = root / "home"
    home.mkdir(parents=True)
    shared_models = REPO / "cache" / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    ensure_demo_datasets(Workspace(home))
    return home


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Base URL of a running `streamlit run app.py` on its own workspace; stopped (process group) at the end."""
    reason = _missing()
    if reason:
        _skip_or_fail(reason)
    root = tmp_path_factory.mktemp("browser")
    home = _workspace(root)
    port = _free_port()
    env = {**os.environ, "DGR_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = open(root / "streamlit.log", "w")  # noqa: SIM115 - closed at teardown
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
           str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, root / "streamlit.log")
        yield {"url": url, "home": home}
    finally:
        _stop_jobs(home)
        _kill_group(proc)
        log.close()


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if _healthy(url):
            return
        time.sleep(0.5)
    pytest.fail(f"streamlit did not answer {url}/_stcore/health in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _stop_jobs(home: Path) -> None:
    """Jobs run in their own process groups (they outlive a closed tab): cancel what the test left running."""
    from dgr_core.jobs import manager
    from dgr_core.workspace import Workspace

    for run in manager.list_runs(Workspace(home)):
        if run.state not in manager.FINAL:
            manager.cancel(run.run_dir)


@pytest.fixture(scope="session")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(RENDER_TIMEOUT_MS)
    pg.goto(server["url"])
    settle(pg)
    yield pg
    context.close()


# ---------------------------------------------------------------- helpers


def settle(page, timeout_s: float = 30) -> None:
    """Wait until the app has rendered: the main block is there and no script run is in progress for a moment.
    (Fragments that poll a job rerun on their own; a short quiet window is enough.)"""
    page.wait_for_selector('[data-testid="stMain"]', state="attached")
    deadline, quiet = time.monotonic() + timeout_s, 0
    while quiet < 4 and time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidgetRunningIcon"], [data-testid="stSkeleton"]').count()
        quiet = 0 if running else quiet + 1
        page.wait_for_timeout(250)


def nav_links(page) -> list[tuple[str, str]]:
    """(label, href) of every page in the sidebar navigation, expanding "View more" if the list is folded."""
    more = page.locator('[data-testid="stSidebarNavViewButton"]')
    if more.count() and "more" in more.first.inner_text().lower():
        more.first.click()
    links = page.locator('[data-testid="stSidebarNavLink"]')
    return [(links.nth(i).inner_text().strip(), links.nth(i).get_attribute("href") or "") for i in range(links.count())]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "home"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def exception_text(page) -> str:
    boxes = page.locator('[data-testid="stException"]')
    return "\n".join(boxes.nth(i).inner_text() for i in range(boxes.count()))


def open_page(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=label).first.click()
    page.wait_for_timeout(300)
    settle(page)


def title_of(page) -> str:
    heading = page.locator('[data-testid="stMain"] h1').first
    heading.wait_for(state="visible")
    return heading.inner_text().strip()


def choose_option(page, key: str, option: str) -> None:
    """Pick `option` in the selectbox whose widget key is `key` (Streamlit puts `st-key-<key>` on its block)."""
    page.locator(f".st-key-{key} [data-baseweb='select']").click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    settle(page)


# ---------------------------------------------------------------- tests


def test_every_page_renders_with_a_title_and_no_exception(page):
    links = nav_links(page)
    assert len(links) >= 5, f"expected the app's pages in the sidebar navigation, found {links}"
    problems = []
    for label, _ in links:
        open_page(page, label)
        title, error = title_of(page), exception_text(page)
        screenshot(page, f"page-{slug(label)}")
        if not title:
            problems.append(f"{label}: no title")
        if error:
            problems.append(f"{label}: exception shown:\n{error[:1500]}")
    assert not problems, "\n\n".join(problems)


def test_a_tiny_evaluation_runs_from_the_browser(page, server):
    """Fake backend in the sidebar, 2 items per benchmark on the Evaluate page: launch, wait, read the results."""
    from dgr_core.jobs import manager
    from dgr_core.workspace import Workspace

    choose_option(page, "backend", "fake")
    label = next((lbl for lbl, _ in nav_links(page) if lbl.lower().startswith("evaluat")), None)
    assert label, "no Evaluate page in the navigation"
    open_page(page, label)
    set_number(page, "eval_limit", 2)
    page.locator(".st-key-eval_launch button").click()
    settle(page)
    runs = manager.list_runs(Workspace(server["home"]), "evaluate")
    assert runs, f"no evaluate run was created:\n{page.locator('[data-testid=stMain]').inner_text()[:2000]}"
    state = manager.wait(runs[0].run_dir, JOB_TIMEOUT_S)
    assert state["state"] == "done", f"the evaluation ended {state['state']}: {state.get('error')}"
    assert runs[0].spec["config"]["backend"] == "fake"
    # The page polls the job: it must show the finished state and then the results without a reload.
    page.get_by_text(re.compile(r"\bdone\b")).first.wait_for(state="visible", timeout=JOB_TIMEOUT_S * 1000)
    settle(page)
    screenshot(page, "job-evaluate")
    main = page.locator('[data-testid="stMain"]')
    assert "No finished evaluation yet" not in main.inner_text()
    assert re.search(r"\d+ samples", main.inner_text()), "the results summary is missing"
    assert main.locator('[data-testid="stDataFrame"]').count() >= 1, "no results table"
    assert not exception_text(page)
