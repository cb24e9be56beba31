"""report.html: the Markdown report as one self-contained page, checked as text and in a real browser
(headless Chromium; skipped with the reason where it is absent): escaped text, inline figures, sortable tables."""
from __future__ import annotations

import base64
import re

import pytest

from pipeline.report_html import STYLE, SORTER, markdown_to_html

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
MD = """# Report

**Patient:** <script>window.__pwned = 1</script> a | pipe

| Model | BLEU | note |
|---|---:|---|
| base | 0.0100 | `b` |
| tuned | 0.5000 | *t* |
| other | 0.2500 | o<br>two lines |

![loss curve](figures/loss.png)

*loss curve*

- one **bold** item
"""


def page(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "loss.png").write_bytes(PNG)
    body = markdown_to_html(MD, tmp_path)
    path = tmp_path / "report.html"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>{body}"
                    f"<script>{SORTER}</script></body></html>")
    return body, path


def test_text_is_escaped_figures_inline_tables_and_lists(tmp_path):
    body, _ = page(tmp_path)
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in body and "<script>window" not in body
    assert body.count("<table>") == 1 and body.count("<tr>") == 4 and '<td class="num">0.5000</td>' in body
    assert "<code>b</code>" in body and "<em>t</em>" in body and "o<br>two lines" in body
    assert re.search(r'<img alt="loss curve" src="data:image/png;base64,[A-Za-z0-9+/=]+">', body)
    assert body.count("loss curve</figcaption>") == 1 and "<em>loss curve</em>" not in body  # caption once
    assert "<li>one <strong>bold</strong> item</li>" in body


def test_a_figure_outside_the_run_folder_is_not_read(tmp_path):
    (tmp_path / "run").mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(PNG)
    body = markdown_to_html("![x](../secret.png)\n", tmp_path / "run")
    assert "base64" not in body and "figure missing" in body


@pytest.mark.slow
def test_in_a_browser_the_script_stays_text_and_a_header_click_sorts(tmp_path):
    from _human_util import chromium_driver

    _, path = page(tmp_path)
    driver = chromium_driver()
    try:
        from selenium.webdriver.common.by import By

        driver.get(path.as_uri())
        assert driver.execute_script("return window.__pwned") is None
        assert "<script>window.__pwned = 1</script>" in driver.find_element(By.TAG_NAME, "p").text
        img = driver.find_element(By.TAG_NAME, "img")
        assert driver.execute_script("return arguments[0].naturalWidth", img) == 1  # the inline PNG decodes

        def column():
            return [r.find_elements(By.TAG_NAME, "td")[1].text for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr")]
        header = driver.find_elements(By.TAG_NAME, "th")[1]
        header.click()
        assert column() == ["0.0100", "0.2500", "0.5000"]
        header.click()
        assert column() == ["0.5000", "0.2500", "0.0100"]
    finally:
        driver.quit()


@pytest.mark.parametrize("cell, numeric", [("0.5000", True), ("<0.0001", True), ("+0.070 (0.6683)", True),
                                           ("12/40 (30%)", False), ("base", False)])
def test_numeric_cells_align_right(cell, numeric):
    from pipeline.report_html import _NUMERIC
    assert bool(_NUMERIC.match(cell)) == numeric
