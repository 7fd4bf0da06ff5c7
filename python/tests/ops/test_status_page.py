"""The service's admin status page (``/admin/status``) in a real browser: Debian's headless
``chromium`` driven through ``chromium-driver`` (selenium; nothing is downloaded). The site is
real (service on PostgreSQL, RabbitMQ, our endpoint and user endpoint, the unmodified SDK); an
extra endpoint registered over REST carries markup in its name to show the page escapes it.
The test reads the page's content, takes a screenshot and checks the picture (size, not
blank, the header band drawn). ``GCRS_SCREENSHOT_DIR`` keeps the screenshot for people.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import opsite  # noqa: E402

pytestmark = pytest.mark.timeout(240)

ADMIN_TOKEN = "status-page-test-admin-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900
EVIL_NAME = "<script>document.title='pwned'</script>evil"
EVIL_DISPLAY = '<img src=x onerror="document.title=\'pwned\'">'
URL = f"{opsite.BASE}/admin/status"


@pytest.fixture(scope="module")
def site(port_5000):
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.access(exe, os.X_OK):
            pytest.fail(f"{exe} is missing: apt-get install chromium chromium-driver (scripts/setup.sh does)")
    with opsite.running_site("status", db_kind="postgres", env={"GCRS_ADMIN_TOKEN": ADMIN_TOKEN}) as s:
        tok = s.token()
        r = requests.post(
            f"{opsite.BASE}/v3/endpoints",
            headers={"Authorization": f"Bearer {tok}"},
            json={"endpoint_name": EVIL_NAME, "display_name": EVIL_DISPLAY, "metadata": {}},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        opsite.run_tasks(s.endpoint_id, ok=3, failing=1)
        yield s


def test_page_requires_the_admin_token(site):
    r = requests.get(URL, timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic ")
    r = requests.get(URL, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401
    # A user's own access token is not an admin token.
    r = requests.get(URL, headers={"Authorization": f"Bearer {site.token()}"}, timeout=10)
    assert r.status_code == 401
    r = requests.get(URL, auth=("admin", ADMIN_TOKEN), timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src" not in r.headers["content-security-policy"]
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert EVIL_NAME not in r.text and "&lt;script&gt;" in r.text


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WIDTH},{HEIGHT}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=ChromeService(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_status_page_in_headless_chromium(site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}
    )
    browser.get(URL)
    assert browser.title == "gc-service status"

    summary = browser.find_element(By.ID, "summary").text
    assert "endpoints online" in summary and "user endpoints running" in summary
    # 4 tasks were submitted in the last hour, 3 succeeded, 1 failed.
    cards = {
        c.find_element(By.TAG_NAME, "span").text: c.find_element(By.TAG_NAME, "b").text
        for c in browser.find_elements(By.CSS_SELECTOR, "#summary .card")
    }
    assert cards["tasks submitted, last hour"] == "4", cards
    assert cards["succeeded, last 24 h"] == "3", cards
    assert cards["failed, last 24 h"] == "1", cards
    assert cards["endpoints online"] == "1 / 2", cards

    endpoints = browser.find_element(By.ID, "endpoints")
    rows = endpoints.find_elements(By.CSS_SELECTOR, "tr.ep")
    ours = [r for r in rows if site.endpoint_id in r.text]
    assert len(ours) == 1
    assert "online" in ours[0].text and svc_name(site) in ours[0].text
    cells = [c.text for c in ours[0].find_elements(By.TAG_NAME, "td")]
    assert cells[-4:] == ["4", "3", "1", "0"], cells
    uep_rows = endpoints.find_elements(By.CSS_SELECTOR, "tr.uep")
    assert any("running" in r.text for r in uep_rows), [r.text for r in uep_rows]

    # The markup in the second endpoint's name is shown as text, never run or rendered.
    assert EVIL_NAME in endpoints.text
    assert EVIL_DISPLAY in endpoints.text
    assert browser.find_elements(By.CSS_SELECTOR, "main script, main img") == []
    assert browser.title != "pwned"

    errors = browser.find_element(By.ID, "errors").text
    assert "ValueError: bad value 0" in errors and "failed" in errors

    shot = tmp_path / "status.png"
    assert browser.save_screenshot(str(shot))
    keep = os.environ.get("GCRS_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(keep) / "admin-status.png")
    check_screenshot(shot, browser)


def svc_name(site) -> str:
    return site.endpoint.NAME


def check_screenshot(path: Path, browser) -> None:
    from PIL import Image

    viewport = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    img = Image.open(path).convert("RGB")
    assert img.size == tuple(viewport), (img.size, viewport)
    assert img.size[0] >= WIDTH * 0.9, img.size
    # Not blank: many colours, and no single colour covers almost everything.
    small = img.resize((img.size[0] // 4, img.size[1] // 4))
    colours = small.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 50, len(colours)
    assert max(n for n, _ in colours) < 0.9 * small.size[0] * small.size[1]
    # The header band is drawn in its dark blue (#1d3557) across the top of the page.
    for x in (10, img.size[0] // 2, img.size[0] - 10):
        r, g, b = img.getpixel((x, 8))
        assert abs(r - 0x1D) < 12 and abs(g - 0x35) < 12 and abs(b - 0x57) < 12, (x, (r, g, b))
    # Below the header the page background (#f4f6f8) or white panels, not the header colour.
    assert img.getpixel((5, img.size[1] - 5)) != img.getpixel((5, 8))
