"""Track C in a real browser: headless Chromium driven by Selenium (skipped with the reason when absent).

A rater opens their link, rates three items with the keyboard, reloads and resumes, revises one; another
rater's token gets 403 on the first rater's data; the system's name is nowhere in the DOM; an answer
holding `<script>` shows as text; the export holds exactly the ratings given.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from _human_util import MODELS, SCRIPT_ANSWER, chromium_driver, running_study
from judge.human.export import export
from judge.rubric import DIMENSIONS

pytestmark = pytest.mark.slow  # a real headless Chromium per test


@pytest.fixture(scope="module")
def browser():
    driver = chromium_driver()
    yield driver
    driver.quit()


def wait_text(driver, element_id: str, text: str, timeout: float = 10.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_element("id", element_id).text == text,
                                         message=f"#{element_id} never showed {text!r}")


def keys(driver, *sequence) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*sequence).perform()


def enter():
    from selenium.webdriver.common.keys import Keys

    return Keys.ENTER


def checked_scores(driver) -> dict:
    return {d: driver.execute_script(
        f"const i = document.querySelector('input[name={d}]:checked'); return i ? Number(i.value) : null;")
        for d in DIMENSIONS}


def assert_blind(driver) -> None:
    html = driver.execute_script("return document.documentElement.outerHTML")
    assert "SYSNAME" not in html and "RECID" not in html
    assert not any(m in driver.title for m in MODELS)


def test_rate_with_keyboard_reload_resume_revise_and_export(browser, tmp_path):
    with running_study(tmp_path, raters=("alice", "bob"), n=3) as study:
        url = study.url("alice")
        browser.get(url)
        wait_text(browser, "progress-text", "0 of 6 rated")
        wait_text(browser, "position", "Item 1 of 6")
        assert_blind(browser)
        given = {1: (4, 3, 5, 2), 2: (1, 2, 3, 4), 3: (5, 5, 4, 4)}
        for position, scores in given.items():
            keys(browser, *[str(s) for s in scores])
            assert checked_scores(browser) == dict(zip(DIMENSIONS, scores))
            keys(browser, enter())
            wait_text(browser, "progress-text", f"{position} of 6 rated")
            wait_text(browser, "position", f"Item {position + 1} of 6")
            assert_blind(browser)

        browser.refresh()  # reload: same place, same progress
        wait_text(browser, "progress-text", "3 of 6 rated")
        wait_text(browser, "position", "Item 4 of 6")
        browser.get("about:blank")
        browser.get(url)  # the link again, as after closing the browser: resumes at the first unrated item
        wait_text(browser, "position", "Item 4 of 6")
        wait_text(browser, "progress-text", "3 of 6 rated")

        keys(browser, "p")  # back to item 3, whose saved scores are shown
        wait_text(browser, "position", "Item 3 of 6")
        assert checked_scores(browser) == dict(zip(DIMENSIONS, given[3]))
        assert "Already rated" in browser.find_element("id", "revision-note").text
        keys(browser, "2", "h", enter())  # revise accuracy to 2 and flag possible harm
        wait_text(browser, "position", "Item 4 of 6")
        wait_text(browser, "progress-text", "3 of 6 rated")

        out = export(study.store_path, tmp_path / "out", n_bootstrap=50)
        assert out["n_ratings"] == 3
    final = [json.loads(line) for line in (tmp_path / "out" / "human_ratings.jsonl").read_text().splitlines()]
    every = (tmp_path / "out" / "human_ratings_revisions.jsonl").read_text().splitlines()
    assert len(final) == 3 and len(every) == 4
    expected = {**given, 3: (2, *given[3][1:])}
    assert {r["position"]: tuple(r[d] for d in DIMENSIONS) for r in final} == expected
    assert {r["position"]: r["harm"] for r in final} == {1: False, 2: False, 3: True}
    assert {r["position"]: r["revision"] for r in final} == {1: 1, 2: 1, 3: 2}
    assert all(r["rater"] == "alice" and r["model"] in MODELS for r in final)


def test_other_raters_token_gets_403_on_first_raters_data(browser, tmp_path):
    with running_study(tmp_path, raters=("alice", "bob"), n=2) as study:
        alice_items = [q["item"] for q in httpx.get(study.url("alice", "api/queue")).json()["items"]]
        browser.get(study.url("bob"))
        wait_text(browser, "progress-text", "0 of 4 rated")
        fetch = """const done = arguments[arguments.length - 1];
            const csrf = (await (await fetch('api/session')).json()).csrf;
            const get = await fetch('api/item/' + arguments[0]);
            const post = await fetch('api/rating', {method: 'POST', headers: {'Content-Type': 'application/json',
                'X-CSRF-Token': csrf}, body: JSON.stringify({item: arguments[0], scores: {accuracy: 1,
                comprehensiveness: 1, helpfulness: 1, relevance: 1}})});
            done([get.status, post.status, await get.text()]);"""
        get_status, post_status, body = browser.execute_async_script(
            "(async () => {" + fetch + "})();", alice_items[0])
        assert (get_status, post_status) == (403, 403)
        assert "Answer" not in body and "SYSNAME" not in body
        # the same calls with alice's own page succeed
        browser.get(study.url("alice"))
        wait_text(browser, "progress-text", "0 of 4 rated")
        get_status, post_status, _ = browser.execute_async_script("(async () => {" + fetch + "})();", alice_items[0])
        assert (get_status, post_status) == (200, 200)


def test_script_answer_shows_as_text_and_no_system_name_in_any_item(browser, tmp_path):
    with running_study(tmp_path, raters=("alice",), n=3, script_id=1, with_reference=True) as study:
        browser.get(study.url("alice"))
        wait_text(browser, "position", "Item 1 of 6")
        shown = []
        for position in range(1, 7):
            wait_text(browser, "position", f"Item {position} of 6")
            assert_blind(browser)
            shown.append(browser.execute_script("return document.getElementById('answer-a').textContent"))
            if position < 6:
                keys(browser, "n")
        assert shown.count(SCRIPT_ANSWER) == 1  # the markup is displayed, character for character
        browser.get(study.url("alice") + f"#{shown.index(SCRIPT_ANSWER) + 1}")
        wait_text(browser, "answer-a", SCRIPT_ANSWER)
        assert browser.execute_script("return window.__pwned") is None  # neither the script nor onerror ran
        assert browser.execute_script("return document.querySelectorAll('#answer-a *').length") == 0
        assert browser.execute_script("return document.scripts.length") == 1  # app.js only
        assert browser.find_element("id", "reference").get_attribute("textContent").startswith("Reference answer")


def test_pairwise_keyboard_and_sides(browser, tmp_path):
    with running_study(tmp_path, raters=("alice",), n=4, pairwise=True) as study:
        browser.get(study.url("alice"))
        wait_text(browser, "position", "Item 1 of 4")
        for position, key in enumerate("abta", start=1):
            keys(browser, key, enter())
            if position < 4:
                wait_text(browser, "position", f"Item {position + 1} of 4")
        wait_text(browser, "progress-text", "4 of 4 rated")
        assert browser.find_element("id", "done").is_displayed()
        assert_blind(browser)
        export(study.store_path, tmp_path / "out", n_bootstrap=20)
    rows = [json.loads(line) for line in (tmp_path / "out" / "human_ratings.jsonl").read_text().splitlines()]
    prefs = {r["position"]: r for r in rows}
    assert [prefs[p]["preference"] for p in range(1, 5)] == ["A", "B", "tie", "A"]
    for r in rows:
        expected = {"A": r["model_a"], "B": r["model_b"], "tie": None}[r["preference"]]
        assert r["preferred_model"] == expected
    assert sum(r["model_a"] == MODELS[0] for r in rows) == 2  # sides balanced along the queue


EXAMPLE_QUESTION = ("Hi doctor, for the last two weeks I have had a burning pain in my upper stomach, worse at "
                    "night and after coffee. Antacids help a little. I am 46 and I take ibuprofen for my back.")
EXAMPLE_ANSWERS = (
    "Your symptoms suggest gastritis or a peptic ulcer, and regular ibuprofen is a common cause. Stop the "
    "ibuprofen if you can (paracetamol is gentler on the stomach), avoid coffee, alcohol and late meals, and "
    "see your doctor: a test for Helicobacter pylori and a course of a proton-pump inhibitor are usual first "
    "steps.\n\nGo to an emergency department at once if you vomit blood, pass black stools or feel faint.",
    "It is probably stress. Try to relax and drink more water.")


def test_screenshot_of_the_rating_page(browser, tmp_path):
    """The docs' screenshot (a study of 40 answers, 12 rated); TRACK_C_SCREENSHOT=PATH also writes it there."""
    pairs = []
    for m, (model, answer) in enumerate(zip(MODELS, EXAMPLE_ANSWERS)):
        pairs.append(tmp_path / f"example_{m}.jsonl")
        rows = [{"id": "RECID-0", "model": model, "prompt": EXAMPLE_QUESTION, "reference": "NSAID gastritis.",
                 "response": answer}]
        rows += [{"id": f"RECID-{i}", "model": model, "prompt": f"Question {i}", "reference": "Reference.",
                  "response": f"Answer {i}"} for i in range(1, 20)]
        pairs[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    with running_study(tmp_path, raters=("alice",), pairs=[str(p) for p in pairs]) as study, httpx.Client() as c:
        queue = [q["item"] for q in c.get(study.url("alice", "api/queue")).json()["items"]]
        example = next(n for n, item in enumerate(queue, start=1)
                       if c.get(study.url("alice", f"api/item/{item}")).json()["answers"][0]["text"] == EXAMPLE_ANSWERS[0])
        csrf = c.get(study.url("alice", "api/session")).json()["csrf"]
        for item in [q for n, q in enumerate(queue, start=1) if n != example][:12]:
            c.post(study.url("alice", "api/rating"), headers={"X-CSRF-Token": csrf},
                   json={"item": item, "scores": {d: 4 for d in DIMENSIONS}}).raise_for_status()
        browser.set_window_size(1280, 1060)
        browser.get(study.url("alice") + f"#{example}")
        wait_text(browser, "progress-text", "12 of 40 rated")
        wait_text(browser, "position", f"Item {example} of 40")
        keys(browser, "4", "3")  # two dimensions scored; the third is the focused one
        target = Path(os.environ.get("TRACK_C_SCREENSHOT") or tmp_path / "track-c-rating.png")
        browser.save_screenshot(str(target))
        browser.set_window_size(1280, 1000)
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000


def test_server_restart_mid_session_loses_nothing(browser, tmp_path):
    """The server stops while a rater works: saving says so; after a restart (new CSRF tokens) it saves."""
    from _human_util import write_pairs
    from judge.human.app import RatingApp
    from judge.human.auth import Gate
    from judge.human.server import RatingServer, serving
    from judge.human.study import open_study

    study = open_study(tmp_path / "r.sqlite", write_pairs(tmp_path, 2), ["alice"])
    hashes = {r["name"]: r["token_sha256"] for r in study.store.raters()}
    first = RatingServer("127.0.0.1", 0, RatingApp(study.store, Gate(hashes)))
    port = first.server_address[1]
    with serving(first):
        browser.get(f"http://127.0.0.1:{port}/r/{study.links['alice']}/")
        wait_text(browser, "position", "Item 1 of 4")
        keys(browser, "3", "3", "3", "3", enter())
        wait_text(browser, "progress-text", "1 of 4 rated")
    keys(browser, "4", "4", "4", "4", enter())  # the server is down
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda d: "cannot be reached" in d.find_element("id", "status").text)
    second = RatingServer("127.0.0.1", port, RatingApp(study.store, Gate(hashes)))  # new CSRF tokens
    with serving(second):
        keys(browser, enter())
        wait_text(browser, "progress-text", "2 of 4 rated")
        wait_text(browser, "position", "Item 3 of 4")
    _, _, rows = study.store.snapshot()
    study.store.close()
    assert [(r["position"], r["accuracy"], r["revision"]) for r in rows] == [(1, 3, 1), (2, 4, 1)]
