"""Debian's chromium driven headless through selenium, for the page tests: whether it is installed, and a
module-scoped driver at a desktop size."""
import shutil

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NO_BROWSER = ("Debian's chromium and chromium-driver are not installed: `make browser` installs them with apt-get "
              "(as root or through sudo), and said why it could not")
needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_BROWSER)


@pytest.fixture(scope="module")
def browser():
    """A headless chromium at 1280 x 900, from the apt driver (never a download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()
