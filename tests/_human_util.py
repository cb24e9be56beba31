"""Helpers shared by the Track C tests: pairs files, an in-process rating server, a headless browser."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from judge.human.app import RatingApp
from judge.human.auth import Gate
from judge.human.server import RatingServer, serving
from judge.human.store import Store
from judge.human.study import open_study

MODELS = ("SYSNAME-baseline-q7x", "SYSNAME-finetuned-k2w")  # must never reach a page, JSON body or header
SCRIPT_ANSWER = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b> rest'
QUESTIONS = ["I have had a dry cough and fever for three days, what should I do?",
             "My knee is swollen and hurts when I climb stairs.",
             "I feel dizzy and very thirsty after meals, could it be diabetes?",
             "I have a red itchy rash on my arm since yesterday."]


def write_pairs(folder: Path, n: int = 4, script_id: int | None = None) -> list[str]:
    """One pairs file per system; ids RECID-i; record `script_id` of the second system answers with HTML."""
    paths = []
    for m, model in enumerate(MODELS):
        path = folder / f"pairs_{m}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for i in range(n):
                response = SCRIPT_ANSWER if (m == 1 and i == script_id) else \
                    f"Answer {m}-{i}: rest, drink fluids and see a doctor if it gets worse."
                f.write(json.dumps({"id": f"RECID-{i:04d}", "model": model, "prompt": QUESTIONS[i % len(QUESTIONS)],
                                    "reference": f"Reference answer {i}.", "response": response}) + "\n")
        paths.append(str(path))
    return paths


@dataclass
class Running:
    base: str                 # http://127.0.0.1:PORT
    links: dict[str, str]     # rater -> token
    store_path: Path
    server: RatingServer

    def url(self, rater: str, rest: str = "") -> str:
        return f"{self.base}/r/{self.links[rater]}/{rest}"


@contextmanager
def running_study(folder: Path, raters=("alice", "bob"), n: int = 4, pairwise: bool = False,
                  per_rater: int | None = None, script_id: int | None = None, with_reference: bool = False,
                  pairs: list[str] | None = None):
    """Create a study in `folder` (from `pairs`, or `write_pairs`) and serve it on a free loopback port."""
    pairs = pairs or write_pairs(folder, n, script_id)
    study = open_study(folder / "ratings.sqlite", pairs, list(raters), per_rater, pairwise, with_reference, 0)
    hashes = {r["name"]: r["token_sha256"] for r in study.store.raters()}
    server = RatingServer("127.0.0.1", 0, RatingApp(study.store, Gate(hashes)))
    with serving(server):
        yield Running(f"http://127.0.0.1:{server.server_address[1]}", study.links, folder / "ratings.sqlite", server)
    study.store.close()


def final_ratings(study) -> list[dict]:
    """The study's stored final ratings, read from its store file (read-only)."""
    store = Store(study.store_path, readonly=True)
    try:
        return store.snapshot()[2]
    finally:
        store.close()


def chromium_driver():
    """A headless Chromium driven by Selenium, or skip with the reason."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("headless browser tests need chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)
