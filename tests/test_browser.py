"""Browser test: headless Chromium drives the real Streamlit server, opens every page and runs one small job.

    .venv/bin/python -m pytest -m browser tests/test_browser.py -x -q

A module fixture starts `streamlit run app.py --server.address 127.0.0.1 --server.port <free port>
--server.headless true` with DGR_HOME set to a temporary workspace (demo datasets prepared, models folder linked
to the repo's cache/models, as the `ws` fixture does) and waits for /_stcore/health. Then:

- every page listed in the sidebar navigation is opened by its URL (st.navigation names it after the page:
  /evaluate, /safety_tax, …), must show a title and no exception box, and is saved as a full-page screenshot;
  every script in views/ must be reachable that way;
- the "DGR in miniature" panel renders (on the Datasets page) with its settings and launch button;
- the fake backend is chosen in the sidebar and a tiny evaluation (2 items per benchmark) is launched on the
  Evaluate page; the test waits for the job, then checks that the page, without a reload, shows the finished state
  and a metrics table with every benchmark of the run's result.json.

Screenshots go to test-artifacts/ (git-ignored). Playwright comes from pip (the `test` extra); the browser is
Debian's chromium at /usr/bin/chromium (`playwright install` is never run: it downloads browsers). When either is
missing the test FAILS, never skips: a skipped browser test would hide a broken app. `.ci/run` installs chromium.
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
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("DGR_CHROMIUM", "/usr/bin/chromium"))
# Headless, no sandbox (containers), and nothing that phones home: the test must run offline.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
                 "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter"]
JOB_TIMEOUT_S = 120
RENDER_TIMEOUT_MS = 90_000  # the first run imports torch and transformers: slow on a loaded 2-core box


def _missing() -> str | None:
    """Why this machine cannot run the browser test, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]' installs it)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM}: `.ci/run` installs it (apt-get install chromium)"
    if not (REPO / "app.py").is_file():
        return "app.py (the router) does not exist"
    return None


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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL and DGR_HOME of a running `streamlit run app.py`; jobs and server stopped at the end."""
    yield from _serve(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def fresh_server(tmp_path):
    """A server of its own that no session has opened yet (the first URL a test opens is the first request)."""
    yield from _serve(tmp_path)


def _serve(root: Path):
    reason = _missing()
    if reason:
        pytest.fail(f"the browser test cannot run: {reason}", pytrace=False)
    home = _workspace(root)
    port = _free_port()
    env = {**os.environ, "DGR_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_path = root / "streamlit.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
           str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log_path)
        yield {"url": url, "home": home, "log": log_path}
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
    """Stop the server we started (its own process group, so nothing else is touched)."""
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


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab; each `goto` opens a fresh Streamlit session."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(RENDER_TIMEOUT_MS)
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
    """(label, href) of every page in the sidebar navigation, once it is the router's: before app.py has run,
    Streamlit used to list the files of a pages/ folder instead, so wait for a page title and a list that holds still."""
    title_of(page)
    before, same = None, 0
    for _ in range(40):
        more = page.locator('[data-testid="stSidebarNavViewButton"]')
        if more.count() and "more" in more.first.inner_text().lower():
            more.first.click()
        links = page.locator('[data-testid="stSidebarNavLink"]')
        now = [(_label(links.nth(i).inner_text()), links.nth(i).get_attribute("href") or "")
               for i in range(links.count())]
        same = same + 1 if now and now == before else 0
        if same >= 2:
            return now
        before = now
        page.wait_for_timeout(250)
    raise AssertionError(f"the sidebar navigation never settled; last seen: {before}")


def _label(text: str) -> str:
    # A link's text is its icon's name, then its title, on separate lines.
    return [line for line in text.splitlines() if line.strip()][-1].strip()


def url_path(href: str) -> str:
    """"http://127.0.0.1:8501/safety_tax" -> "safety_tax"; the default page is "" (served at /)."""
    return urlparse(href).path.strip("/")


def screenshot(page, name: str, max_height: int = 6000) -> Path:
    """The whole page as a PNG in test-artifacts/. Streamlit scrolls inside its own container, so a "full page"
    shot would stop at the window: the window is stretched to the content's height for the shot instead."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stSidebarContent]')].map(e => e.scrollHeight), 0)")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), max_height)})
    page.wait_for_timeout(300)  # let the canvas-drawn tables repaint at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def exception_text(page) -> str:
    boxes = page.locator('[data-testid="stException"]')
    return "\n".join(boxes.nth(i).inner_text() for i in range(boxes.count()))


def goto(page, url: str) -> str:
    """Open `url` in a new session and wait for its first full run; returns the page title."""
    page.goto(url)
    title = title_of(page)  # before the first run, "no script is running" says nothing
    settle(page)
    return title


def title_of(page) -> str:
    heading = page.locator('[data-testid="stMain"] h1').first
    heading.wait_for(state="visible")
    return heading.inner_text().strip()


def choose_option(page, key: str, option: str) -> None:
    """Pick `option` in the selectbox whose widget key is `key` (Streamlit puts `st-key-<key>` on its block)."""
    box = page.locator(f".st-key-{key}").get_by_role("combobox")
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)
    assert box.input_value() == option, f"selectbox {key!r} shows {box.input_value()!r}, not {option!r}"


def set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(str(value))
    box.press("Enter")
    settle(page)


# ---------------------------------------------------------------- tests


def test_every_page_opens_by_its_url(page, server):
    goto(page, server["url"])
    links = nav_links(page)
    paths = [url_path(href) for _, href in links]
    scripts = sorted(p.name for p in (REPO / "views").glob("*.py"))
    assert len(paths) == len(set(paths)) == len(scripts), \
        f"every script in views/ ({scripts}) needs one navigation entry; found {links}"
    for expected in ("evaluate", "safety_tax", "report"):  # st.navigation names a page's URL after it
        assert expected in paths, f"no page at /{expected}; the navigation has {paths}"
    problems, demo_pages = [], []
    for (label, _), path in zip(links, paths, strict=True):
        title = goto(page, f"{server['url']}/{path}")
        error = exception_text(page)
        if demo_panel_shown(page):
            demo_pages.append(path)
        screenshot(page, f"page-{path or 'default'}")
        if not title:
            problems.append(f"/{path} ({label}): no title")
        if error:
            problems.append(f"/{path} ({label}): exception shown:\n{error[:1500]}")
    assert not problems, "\n\n".join(problems)
    assert demo_pages, "no page offers the 'DGR in miniature' panel"


def demo_panel_shown(page) -> bool:
    """Unfold the "DGR in miniature" expander if this page has one; check its launch button and settings render
    (the demo itself takes minutes: the demo job is tested in test_pipeline.py)."""
    expander = page.locator('[data-testid="stExpander"]', has_text="DGR in miniature")
    if not expander.count():
        return False
    expander.first.locator("summary").click()
    settle(page)
    button = expander.first.locator(".st-key-demo_launch button")
    button.wait_for(state="visible")
    assert "Run DGR in miniature" in button.inner_text()
    assert "demo-external-refusal" in expander.first.inner_text()
    from dgr_core.pipeline import DemoConfig

    assert page.locator(".st-key-demo_n_refine input").input_value() == str(DemoConfig().n_refine)
    return True


def test_a_tiny_evaluation_runs_from_the_browser(page, server):
    """Fake backend in the sidebar, 2 items per benchmark on the Evaluate page: launch, wait, read the results."""
    from dgr_core.jobs import manager
    from dgr_core.jobs.results import EvalResult
    from dgr_core.workspace import Workspace

    assert goto(page, f"{server['url']}/evaluate") == "Evaluate"
    choose_option(page, "backend", "fake")
    set_number(page, "eval_limit", 2)
    page.locator(".st-key-eval_launch button").click()
    settle(page)
    runs = manager.list_runs(Workspace(server["home"]), "evaluate")
    assert runs, f"no evaluate run was created:\n{main_text(page)[:2000]}"
    run = runs[0]
    state = manager.wait(run.run_dir, JOB_TIMEOUT_S)
    assert state["state"] == "done", f"the evaluation ended {state['state']}: {state.get('error')}"
    config = run.spec["config"]
    assert config["backend"] == "fake" and config["limit"] == 2
    # The page polls the job: without a reload it must show the finished state, then the results.
    page.get_by_text(re.compile(r"\bdone\b")).first.wait_for(state="visible", timeout=JOB_TIMEOUT_S * 1000)
    page.get_by_text(re.compile(r"\d+ samples")).first.wait_for(state="visible", timeout=JOB_TIMEOUT_S * 1000)
    settle(page)
    screenshot(page, "job-evaluate")
    text = main_text(page)
    assert run.run_dir.name in text, "the job panel does not name the run"
    assert "No finished evaluation yet" not in text
    result = run.result_as(EvalResult)
    assert result is not None and f"{result.n_samples} samples" in text
    tables = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]')
    assert tables.count() >= 1, "no results table"
    shown = tables.first.text_content() or ""  # the grid draws on a canvas; its accessible table has the text
    missing = [bench for bench in result.metrics if bench not in shown]
    assert not missing, f"benchmarks of result.json missing from the metrics table: {missing}\n{shown[:1500]}"
    assert not exception_text(page)


@pytest.mark.parametrize("path", ["safety_tax", "shift"])
def test_a_page_url_opened_first_on_a_fresh_server_runs_the_app(browser, fresh_server, path):
    """A bookmark or a link pasted into lab-meeting notes is the first request a freshly started server sees. It
    must run the router like any other URL: the page with its title, the shared sidebar (target model, backend) and
    the navigation of the app's pages, never a bare page script with a list of file names (what Streamlit's
    auto-discovery of a `pages/` folder used to serve until app.py had run once)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    try:
        title = goto(page, f"{fresh_server['url']}/{path}")
        assert title == {"safety_tax": "Safety tax", "shift": "Distribution shift"}[path]
        sidebar = page.locator('[data-testid="stSidebar"]')
        for key in ("backend", "model_ref"):
            assert sidebar.locator(f".st-key-{key}").count() == 1, f"/{path} opened first has no sidebar {key!r}"
        labels = [label for label, _ in nav_links(page)]
        assert "Safety tax" in labels and "Datasets" in labels, labels
        assert not {"app", "safety_tax", "shift"} & set(labels), f"raw script names in the navigation: {labels}"
        assert url_path(page.url) == path
        assert not exception_text(page)
        screenshot(page, f"deep-link-{path}")
    finally:
        context.close()
