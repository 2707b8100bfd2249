"""``report.html`` in a real browser: headless Chromium, driven by Selenium, with the network off.

The page is built from the fake fit (``tests/report/fakes.py``, projected past its last reading)
with a sourced table of its own. The checks: the page loads no resource from the network and logs
no console error; hovering a reading point shows a tooltip with its house, field dates and shares;
a click on a house in the legend hides it; the buttons switch the points to the adjusted shares;
a click on a point lists its source links. Skipped when Chromium, its driver or Selenium is
missing (``apt-get install chromium chromium-driver``; Selenium comes with the dev extras).
"""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from model.report import html as report
from model.report import interactive
from model.results.headline import field_span
from tests.report.fakes import HOUSE_A, fake_result

CHROMIUM = next(
    (path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "browser check skipped: chromium not installed: apt-get install chromium chromium-driver",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver",
    reason="browser check skipped: selenium not installed (pip install -e '.[dev]')",
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PLOT = interactive.PLOT_ID
TIMEOUT = 20


@pytest.fixture(scope="module")
def result():
    return fake_result(through="2023-08-31")


@pytest.fixture(scope="module")
def page(result, tmp_path_factory):
    """report.html of the fake fit, with a sourced table giving every reading an address."""
    folder = tmp_path_factory.mktemp("browser")
    sourced = folder / "readings_sourced.csv"
    pd.DataFrame(
        {
            "src_row": [f"sim-{i:02d}" for i in range(len(result.polls))],
            "source_url": [f"https://example.org/poll/{i}" for i in range(len(result.polls))],
            "excerpt": [f"excerpt {i}" for i in range(len(result.polls))],
        }
    ).to_csv(sourced, index=False)
    return report.write_report(result, folder, figures={}, run_id="run-browser", sourced=sourced)


@pytest.fixture(scope="module")
def browser(page, tmp_path_factory):
    """Headless Chromium with the network switched off (DevTools), on the report page."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
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
        "--window-size=1300,1000",
        # besides the DevTools offline switch: any request that got past it would go to a closed port
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
        )
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: d.execute_script(
                "var gd = document.getElementById(arguments[0]);"
                "return !!(window.Plotly && gd && gd._fullLayout && gd.querySelector('path.point'));",
                PLOT,
            )
        )
        yield driver
    finally:
        driver.quit()


def trace_indices(driver, kind: str, answer: str | None = None) -> list[int]:
    """Indices of the chart's traces of one kind (``meta.kind``), in one answer's panel or all."""
    return driver.execute_script(
        "var gd = document.getElementById(arguments[0]), kind = arguments[1], answer = arguments[2];"
        "var out = [];"
        "gd.data.forEach(function (t, i) {"
        "  if (t.meta && t.meta.kind === kind && (answer === null || t.meta.answer === answer)) {"
        "    out.push(i);"
        "  }"
        "});"
        "return out;",
        PLOT,
        kind,
        answer,
    )


def tooltip(driver) -> str:
    """The lines of the tooltip on show (empty when there is none)."""
    return driver.execute_script(
        "var box = document.querySelector('#' + arguments[0] + ' .hoverlayer .hovertext');"
        "if (!box) { return ''; }"
        "var lines = box.querySelectorAll('text tspan.line');"
        "if (!lines.length) { return box.textContent; }"
        "return Array.prototype.map.call(lines, function (l) { return l.textContent; }).join('\\n');",
        PLOT,
    )


def hover_first_point(driver):
    """Move the mouse onto the first reading marker of the top panel; return the marker."""
    point = driver.find_element(By.CSS_SELECTOR, f"#{PLOT} .subplot.xy .scatterlayer path.point")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", point)
    ActionChains(driver).move_to_element(point).pause(0.3).perform()
    WebDriverWait(driver, TIMEOUT).until(lambda d: tooltip(d) != "")
    return point


def test_nothing_is_loaded_from_the_network_and_no_console_error(browser, page):
    text = page.read_text()
    assert not re.findall(r"""src\s*=\s*["']?https?:""", text)
    requested = browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; });"
    )
    assert not [url for url in requested if not url.startswith(("file:", "data:"))]
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_hovering_a_reading_shows_its_house_dates_and_shares(browser, result):
    hover_first_point(browser)
    text = tooltip(browser)
    print(f"tooltip read in the browser:\n{text}")
    polls = result.polls
    shown = [
        r
        for _, r in polls.iterrows()
        if f"field {field_span(r['field_start'], r['field_end'], '–')}\n" in text + "\n"
    ]
    assert len(shown) == 1, text
    (row,) = shown
    assert text.splitlines()[0] == row["pollster"]  # the house, shown as written (escaped markup)
    assert f"talks {row['talks']:g}%" in text and f"continue {row['continue']:g}%" in text
    n = "n not published" if pd.isna(row["n"]) else f"n = {row['n']:,.0f} respondents"
    assert n in text
    assert "source sim-" in text and "example.org/poll/" in text


def test_a_click_on_a_house_in_the_legend_hides_it_in_every_panel(browser):
    house_traces = browser.execute_script(
        "var gd = document.getElementById(arguments[0]); var out = [];"
        "gd.data.forEach(function (t, i) { if (t.meta && t.meta.pollster === 'House B') { out.push(i); } });"
        "return out;",
        PLOT,
    )
    assert len(house_traces) == 3  # one per answer panel
    item = next(
        el
        for el in browser.find_elements(By.CSS_SELECTOR, f"#{PLOT} .legend .traces")
        if el.text.strip() == "House B"
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", item)
    item.find_element(By.CSS_SELECTOR, ".legendtoggle").click()
    visible = lambda d: d.execute_script(  # noqa: E731
        "var gd = document.getElementById(arguments[0]);"
        "return arguments[1].map(function (i) { return gd.data[i].visible; });",
        PLOT,
        house_traces,
    )
    WebDriverWait(browser, TIMEOUT).until(lambda d: visible(d) == ["legendonly"] * 3)
    item.find_element(By.CSS_SELECTOR, ".legendtoggle").click()  # and back
    WebDriverWait(browser, TIMEOUT).until(lambda d: visible(d) == [True] * 3)
    assert HOUSE_A in [
        el.text.strip() for el in browser.find_elements(By.CSS_SELECTOR, f"#{PLOT} .legend .traces")
    ]


def test_the_buttons_switch_to_adjusted_readings_and_back(browser, result):
    # House B's readings: the reference house's (House A on Q_MAIN) do not move when adjusted
    (index,) = [
        i
        for i in trace_indices(browser, "readings", "talks")
        if browser.execute_script(
            "return document.getElementById(arguments[0]).data[arguments[1]].meta.pollster;",
            PLOT,
            i,
        )
        == "House B"
    ]
    shown = lambda d: d.execute_script(  # noqa: E731
        "return Array.from(document.getElementById(arguments[0]).data[arguments[1]].y);",
        PLOT,
        index,
    )
    before = shown(browser)
    buttons = browser.find_elements(By.CSS_SELECTOR, f"#{PLOT} .updatemenu-button")
    assert [b.text for b in buttons] == list(interactive.MODES.values())
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", buttons[1])
    ActionChains(browser).move_to_element(buttons[1]).click().perform()
    WebDriverWait(browser, TIMEOUT).until(lambda d: shown(d) != before)
    table = result.adjusted_readings()
    part = table[(table["pollster"] == "House B") & (table["answer"] == "talks")]
    assert before == pytest.approx(list(part["raw"]))
    assert shown(browser) == pytest.approx(list(part["adjusted"]))
    buttons = browser.find_elements(By.CSS_SELECTOR, f"#{PLOT} .updatemenu-button")
    ActionChains(browser).move_to_element(buttons[0]).click().perform()
    WebDriverWait(browser, TIMEOUT).until(lambda d: shown(d) == before)


def test_a_click_on_a_reading_lists_its_source_links(browser):
    point = hover_first_point(browser)
    ActionChains(browser).move_to_element(point).click().perform()
    box = browser.find_element(By.ID, f"{PLOT}-sources")
    WebDriverWait(browser, TIMEOUT).until(lambda d: box.find_elements(By.TAG_NAME, "a"))
    links = box.find_elements(By.TAG_NAME, "a")
    assert all(a.get_attribute("href").startswith("https://example.org/poll/") for a in links)
    assert "field " in box.text
