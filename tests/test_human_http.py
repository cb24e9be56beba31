"""Track C server over plain HTTP (httpx): every security rule, blindness, validation and the headers."""
from __future__ import annotations

import json
import re
import socket

import httpx
import pytest

from _human_util import final_ratings, running_study
from judge.human.store import Store
from judge.rubric import DIMENSIONS

GOOD = {d: 3 for d in DIMENSIONS}


@pytest.fixture
def study(tmp_path):
    with running_study(tmp_path, raters=("alice", "bob"), n=3) as running:
        yield running


def session(client: httpx.Client, study, rater: str) -> dict:
    return client.get(study.url(rater, "api/session")).json()


def items(client, study, rater: str) -> list[str]:
    return [q["item"] for q in client.get(study.url(rater, "api/queue")).json()["items"]]


def post(client, study, rater, body, csrf=None, headers=None):
    csrf = session(client, study, rater)["csrf"] if csrf is None else csrf
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json", **(headers or {})}
    return client.post(study.url(rater, "api/rating"), content=json.dumps(body), headers=h)


def test_no_token_or_wrong_token_is_401(study):
    with httpx.Client() as c:
        for path in ("/", "/r/", "/api/session", "/index.html", "/app.js", "/favicon.ico"):
            assert c.get(study.base + path).status_code == 401, path
        wrong = "A" * 43
        for rest in ("", "app.js", "api/session", "api/queue", f"api/item/{items(c, study, 'alice')[0]}"):
            assert c.get(f"{study.base}/r/{wrong}/{rest}").status_code == 401, rest
        # a token that differs from alice's in its last character only
        near = study.links["alice"][:-1] + ("A" if study.links["alice"][-1] != "A" else "B")
        assert c.get(f"{study.base}/r/{near}/api/session").status_code == 401
        r = c.post(f"{study.base}/r/{wrong}/api/rating", json={"item": "x" * 16, "scores": GOOD})
        assert r.status_code == 401


def test_other_raters_item_is_403_to_read_and_to_write(study):
    with httpx.Client() as c:
        alice_item = items(c, study, "alice")[0]
        assert c.get(study.url("alice", f"api/item/{alice_item}")).status_code == 200
        assert c.get(study.url("bob", f"api/item/{alice_item}")).status_code == 403
        assert c.get(study.url("bob", "api/item/doesNotExist123")).status_code == 403
        r = post(c, study, "bob", {"item": alice_item, "scores": GOOD})
        assert r.status_code == 403 and r.json()["error"] == "not your item"
    assert final_ratings(study) == []  # nothing was stored for anyone


def test_csrf_rules(study):
    with httpx.Client() as c:
        item = items(c, study, "alice")[0]
        body = {"item": item, "scores": GOOD}
        url = study.url("alice", "api/rating")
        assert c.post(url, json=body).status_code == 403                                # no CSRF header
        assert post(c, study, "alice", body, csrf="wrong-token").status_code == 403      # wrong token
        bob_csrf = session(c, study, "bob")["csrf"]
        assert post(c, study, "alice", body, csrf=bob_csrf).status_code == 403          # another rater's token
        evil = {"Origin": "http://evil.example"}
        assert post(c, study, "alice", body, headers=evil).status_code == 403           # cross-origin
        assert post(c, study, "alice", body, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert post(c, study, "alice", body, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
        r = c.post(url, content=json.dumps(body), headers={"X-CSRF-Token": session(c, study, "alice")["csrf"],
                                                           "Content-Type": "text/plain"})
        assert r.status_code == 415                                                     # a form-like type
        assert final_ratings(study) == []
        same = {"Origin": study.base, "Sec-Fetch-Site": "same-origin"}
        assert post(c, study, "alice", body, headers=same).status_code == 200
        assert len(final_ratings(study)) == 1


@pytest.mark.parametrize("change", [
    {"accuracy": 6}, {"accuracy": 0}, {"accuracy": -1}, {"accuracy": "3"}, {"accuracy": 3.0}, {"accuracy": True},
    {"accuracy": None}, {"extra_dimension": 3},
])
def test_out_of_range_or_malformed_score_is_400(study, change):
    with httpx.Client() as c:
        scores = {**GOOD, **change}
        r = post(c, study, "alice", {"item": items(c, study, "alice")[0], "scores": scores})
        assert r.status_code == 400, r.text
        assert "error" in r.json()
    assert final_ratings(study) == []


@pytest.mark.parametrize("body", [
    {"scores": GOOD},                                                   # no item
    {"item": 17, "scores": GOOD},                                       # item not a string
    {"item": "ITEM", "scores": {d: 3 for d in DIMENSIONS[:3]}},         # a dimension missing
    {"item": "ITEM", "scores": GOOD, "harm": "yes"},                    # flag not a boolean
    {"item": "ITEM", "scores": GOOD, "comment": 5},                     # comment not text
    {"item": "ITEM", "scores": GOOD, "comment": "x" * 2001},            # comment too long
    {"item": "ITEM", "scores": GOOD, "comment": "nul \x00 byte"},       # control character
    {"item": "ITEM", "scores": GOOD, "model": "x"},                     # unknown field
    {"item": "ITEM", "preference": "A"},                                # pairwise field in a pointwise study
    {"item": "ITEM", "scores": GOOD, "request_id": "short"},            # bad request id
    [1, 2, 3],                                                          # not an object
])
def test_invalid_bodies_are_400(study, body):
    with httpx.Client() as c:
        if isinstance(body, dict) and body.get("item") == "ITEM":
            body["item"] = items(c, study, "alice")[0]
        assert post(c, study, "alice", body).status_code == 400
    assert final_ratings(study) == []


def test_not_json_and_size_limits(study):
    with httpx.Client() as c:
        csrf = session(c, study, "alice")["csrf"]
        h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
        assert c.post(study.url("alice", "api/rating"), content=b"{not json", headers=h).status_code == 400
        assert c.post(study.url("alice", "api/rating"), content=b"\xff\xfe", headers=h).status_code == 400
        assert c.post(study.url("alice", "api/rating"), content=b"x" * 20_000, headers=h).status_code == 413
    # no Content-Length at all
    port = study.server.server_address[1]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST /r/{study.links['alice']}/api/rating HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert s.recv(100).split(b" ")[1] == b"411"


def test_methods_paths_host_and_redirect(study):
    with httpx.Client() as c:
        assert c.put(study.url("alice", "api/rating"), json={}).status_code == 405
        assert c.delete(study.url("alice")).status_code == 405
        assert c.get(study.url("alice", "api/rating")).status_code == 405
        assert c.get(study.url("alice", "api/nothing")).status_code == 404
        assert c.get(study.url("alice", "../../etc/passwd")).status_code in (401, 404)
        r = c.get(f"{study.base}/r/{study.links['alice']}")
        assert r.status_code == 308 and r.headers["location"] == f"/r/{study.links['alice']}/"
        # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example
        assert c.get(study.url("alice", "api/session"), headers={"Host": "evil.example"}).status_code == 421
        assert c.get(study.url("alice", "api/session").replace("127.0.0.1", "localhost")).status_code == 200


def test_security_headers_on_every_response(study):
    with httpx.Client() as c:
        item = items(c, study, "alice")[0]
        responses = [c.get(study.url("alice", rest)) for rest in ("", "app.js", "app.css", "favicon.svg",
                                                                  "api/session", "api/queue", f"api/item/{item}")]
        responses += [c.get(study.base + "/"), c.get(study.url("bob", f"api/item/{item}")),
                      post(c, study, "alice", {"item": item, "scores": {**GOOD, "accuracy": 9}})]
        for r in responses:
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["server"] == "track-c"
            assert "set-cookie" not in r.headers and "access-control-allow-origin" not in r.headers
        assert responses[0].headers["content-type"].startswith("text/html")
        assert responses[1].headers["content-type"].startswith("text/javascript")
        assert responses[4].headers["content-type"].startswith("application/json")


def test_system_names_and_record_ids_never_leave_the_server(tmp_path):
    with running_study(tmp_path, raters=("alice", "bob"), n=3, pairwise=False, with_reference=True) as study, \
            httpx.Client() as c:
        seen = []
        for rater in ("alice", "bob"):
            for rest in ("", "app.js", "app.css", "api/session", "api/queue"):
                seen.append(c.get(study.url(rater, rest)))
            for item in items(c, study, rater):
                seen.append(c.get(study.url(rater, f"api/item/{item}")))
                seen.append(post(c, study, rater, {"item": item, "scores": GOOD}))
                seen.append(c.get(study.url(rater, f"api/item/{item}")))
        text = "".join(r.text + json.dumps(dict(r.headers)) for r in seen)
        assert all(r.status_code == 200 for r in seen)
        assert "SYSNAME" not in text and "RECID" not in text
        assert "baseline" not in text.lower() and "finetuned" not in text.lower()


def test_rating_roundtrip_revision_and_idempotent_retry(study):
    with httpx.Client() as c:
        first = items(c, study, "alice")[0]
        body = {"item": first, "scores": {**GOOD, "accuracy": 5}, "harm": True, "comment": "  ok  ",
                "request_id": "req-0000000001"}
        r1 = post(c, study, "alice", body)
        assert r1.status_code == 200 and r1.json()["revision"] == 1 and r1.json()["rated"] == 1
        assert post(c, study, "alice", body).json()["revision"] == 1  # the same request again: not stored twice
        r2 = post(c, study, "alice", {**body, "scores": GOOD, "harm": False, "request_id": "req-0000000002"})
        assert r2.json()["revision"] == 2 and r2.json()["rated"] == 1
        item = c.get(study.url("alice", f"api/item/{first}")).json()
        assert item["rating"] == {"scores": GOOD, "harm": False, "comment": "ok"} and item["revisions"] == 2
    store = Store(study.store_path, readonly=True)
    _, _, rows = store.snapshot()
    store.close()
    assert [(r["revision"], r["accuracy"], r["harm"]) for r in rows] == [(1, 5, 1), (2, 3, 0)]


def test_pairwise_api(tmp_path):
    with running_study(tmp_path, raters=("alice",), n=4, pairwise=True) as study, httpx.Client() as c:
        queue = items(c, study, "alice")
        assert len(queue) == 4
        item = c.get(study.url("alice", f"api/item/{queue[0]}")).json()
        assert [a["side"] for a in item["answers"]] == ["A", "B"]
        assert post(c, study, "alice", {"item": queue[0], "scores": GOOD}).status_code == 400
        assert post(c, study, "alice", {"item": queue[0], "preference": "C"}).status_code == 400
        r = post(c, study, "alice", {"item": queue[0], "preference": "B", "harm_a": True})
        assert r.status_code == 200
        assert c.get(study.url("alice", f"api/item/{queue[0]}")).json()["rating"] == \
            {"preference": "B", "harm_a": True, "harm_b": False, "comment": ""}


def test_page_inserts_text_only_and_has_no_inline_script():
    from importlib.resources import files

    static = files("judge.human") / "static"
    js = (static / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert "textContent" in js
    html = (static / "index.html").read_text()
    assert html.count("<script") == 1 and '<script src="app.js" defer></script>' in html
    assert "<style" not in html and " style=" not in html
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no inline event handlers


def test_access_log_masks_tokens(study, capsys):
    study.server.access_log = True
    with httpx.Client() as c:
        c.get(study.url("alice", "api/session"))
        c.get(f"{study.base}/r/{'Z' * 43}/api/session")
    study.server.access_log = False
    err = capsys.readouterr().err
    assert "/r/<token>/api/session" in err and study.links["alice"] not in err and "Z" * 43 not in err
