"""`pipeline browse` in a real headless browser: Debian's chromium driven by selenium through chromedriver.

`make test` installs them first (`make browser`, apt-get as root or through sudo); where they could not be
installed these tests skip, saying so."""
import threading

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from browse_fixtures import NO_SKETCH, packed_landscapes
from headless import browser, needs_browser  # noqa: F401 (browser: a fixture)
from pipeline.browse import Dataset, Filters
from pipeline.browse_web import make_server, write_site

pytestmark = needs_browser
SKY = 156  # sky-other: drawn in half of the landscapes


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The packed landscapes, served on a free local port; yields (dataset, url, tmp folder)."""
    tmp = tmp_path_factory.mktemp("browse")
    layout, _, _ = packed_landscapes(tmp)
    dataset = Dataset(layout)
    server = make_server(dataset, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield dataset, f"http://127.0.0.1:{server.server_address[1]}/", tmp
    server.shutdown()
    server.server_close()


def _ready(driver, url):
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def _cards(driver) -> list[str]:
    return [c.get_attribute("data-key") for c in driver.find_elements(By.CSS_SELECTOR, "#grid .card")]


def _images_loaded(driver, selector) -> bool:
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll(arguments[0])];"
        "return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);", selector)


def _pick_class(driver, cls: int) -> None:
    before = driver.find_element(By.ID, "count").text
    Select(driver.find_element(By.ID, "f-class")).select_by_value(str(cls))
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "count").text != before)


def test_the_page_shows_the_samples_filters_by_class_and_the_overlay_toggles_and_fades(site, browser):
    dataset, url, tmp = site
    _ready(browser, url)
    keys = [s["key"] for s in dataset.page(Filters(), 0, 50)["samples"]]
    assert _cards(browser) == keys and len(keys) == 8
    WebDriverWait(browser, 30).until(lambda d: _images_loaded(d, "#grid .photo") and _images_loaded(d, "#grid .overlay"))
    assert _images_loaded(browser, "#grid img.sketch") and len(browser.find_elements(By.CSS_SELECTOR, "#grid .sketch"))
    no_sketch = browser.find_element(By.CSS_SELECTOR, f'.card[data-key="{keys[NO_SKETCH]}"]')
    assert "no sketch" in no_sketch.text
    # the samples whose segmentation random weights made say so, the run's annotators too
    marked = [c.get_attribute("data-key") for c in browser.find_elements(By.CSS_SELECTOR, "#grid .card")
              if "RANDOM weights" in c.text and "seg" in c.find_element(By.CLASS_NAME, "random-mark").text]
    assert marked == keys[1::2]
    assert "RANDOM weights made clip, seg" in browser.find_element(By.ID, "random-banner").text
    browser.save_screenshot(str(tmp / "browse.png"))

    overlay = browser.find_element(By.CSS_SELECTOR, "#grid .overlay")
    assert overlay.is_displayed()
    browser.find_element(By.ID, "overlay-toggle").click()
    assert not overlay.is_displayed()
    browser.find_element(By.ID, "overlay-toggle").click()
    assert overlay.is_displayed()
    assert overlay.value_of_css_property("opacity") == "0.5"
    browser.execute_script("const s = document.getElementById('overlay-opacity'); s.value = 80;"
                           "s.dispatchEvent(new Event('input'));")
    assert overlay.value_of_css_property("opacity") == "0.8"

    _pick_class(browser, SKY)
    with_sky = [s["key"] for s in dataset.page(Filters(cls=SKY), 0, 50)["samples"]]
    assert _cards(browser) == with_sky and 0 < len(with_sky) < len(keys)
    assert all("sky-other" in c.text for c in browser.find_elements(By.CSS_SELECTOR, "#grid .card"))
    assert f"of {len(with_sky)} samples" in browser.find_element(By.ID, "count").text
    assert (tmp / "browse.png").stat().st_size > 10_000


def test_a_sample_opens_large_with_its_json(site, browser):
    dataset, url, _ = site
    _ready(browser, url)
    first = browser.find_element(By.CSS_SELECTOR, "#grid .card")
    first.click()
    detail = browser.find_element(By.ID, "detail")
    WebDriverWait(browser, 10).until(lambda d: detail.is_displayed())
    assert '"source": "raw/0.jpg"' in browser.find_element(By.ID, "detail-json").text
    assert _images_loaded(browser, "#detail .photo")
    browser.find_element(By.ID, "detail-close").click()
    assert not detail.is_displayed()


def test_the_rejects_view_lists_ingests_rejects_with_their_reasons(site, browser):
    _, url, _ = site
    _ready(browser, url)
    browser.find_element(By.ID, "view-rejects").click()
    WebDriverWait(browser, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rejects-rows tr")) == 3)
    Select(browser.find_element(By.ID, "f-reason")).select_by_value("too_small")
    WebDriverWait(browser, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rejects-rows tr")) == 1)
    assert "raw/tiny.png" in browser.find_element(By.ID, "rejects-rows").text


def test_the_static_site_opens_from_disk_and_filters_alike(site, browser, tmp_path):
    dataset, _, _ = site
    write_site(dataset, tmp_path / "site", progress=False)
    _ready(browser, (tmp_path / "site" / "index.html").as_uri())
    assert len(_cards(browser)) == 8
    WebDriverWait(browser, 30).until(lambda d: _images_loaded(d, "#grid .photo"))
    _pick_class(browser, SKY)
    assert _cards(browser) == [s["key"] for s in dataset.page(Filters(cls=SKY), 0, 50)["samples"]]
