from __future__ import annotations

import os
import shutil

import gymnasium as gym
import pytest

import earlyexp.envs  # noqa: F401
from earlyexp.envs.webshop.site import SiteConfig, create_app, main, running, session_task

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def expert_env(split: str, task: int):
    env = gym.make("EarlyExp/WebShop-v0")
    env.reset(options={"split": split, "task": task})
    return env


@pytest.fixture(scope="module")
def client():
    from starlette.testclient import TestClient

    with TestClient(create_app(SiteConfig())) as c:
        yield c


def test_session_ids_pin_tasks():
    assert session_task("fixed_12") == ("test", 12)
    assert session_task("ood_3") == ("ood", 3)
    split, index = session_task("alice")
    assert split == "train" and session_task("alice") == (split, index)


def test_site_serves_the_env_pages_and_completes_a_purchase(client):
    env = expert_env("test", 6)
    r = client.get("/fixed_6/reset", follow_redirects=True)
    assert r.status_code == 200 and env.unwrapped.instruction().replace("'", "&#x27;") in r.text
    assert '<link rel="stylesheet" href="/static/site.css">' in r.text
    done = False
    while not done:
        action = env.unwrapped.expert_action()
        if action.startswith("search["):
            form = {"action": "search", "query": action[len("search[") : -1]}
        else:
            form = {"action": action}
        r = client.post("/fixed_6/act", data=form, follow_redirects=True)
        obs, reward, term, trunc, info = env.step(action)
        done = term or trunc
        # the site shows the same page model as the env's html mode
        for label in info["available_actions"]:
            assert f'value="{label.replace(">", "&gt;").replace("<", "&lt;")}"' in r.text
    assert reward == 1.0
    assert "Thank you for shopping with us!" in r.text and "Rubric" in r.text
    assert "✘" not in r.text


def test_site_reports_invalid_actions_and_bad_sessions(client):
    client.get("/fixed_1/reset")
    r = client.post("/fixed_1/act", data={"action": "click[Buy Now]"}, follow_redirects=True)
    assert "Invalid action: No such button" in r.text
    assert client.get("/fixed_100000").status_code == 404
    assert client.get("/static/site.css").headers["content-type"].startswith("text/css")
    assert "fixed_0" in client.get("/").text


def test_main_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        main(["--port", "not-a-port"])


def chromium_path() -> str | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        own = p.chromium.executable_path
    if own and os.path.exists(own):
        return own
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_a_whole_purchase_in_headless_chromium():
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium (run `make install`)")
    from playwright.sync_api import sync_playwright

    env = expert_env("test", 8)
    with running(SiteConfig(port=0)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/fixed_8/reset")
            assert env.unwrapped.instruction() in page.inner_text("#instruction-text")
            done = False
            while not done:
                action = env.unwrapped.expert_action()
                if action.startswith("search["):
                    page.fill("#search_input", action[len("search[") : -1])
                    page.press("#search_input", "Enter")
                else:
                    label = action[len("click[") : -1]
                    page.get_by_role("button", name=label, exact=True).click()
                page.wait_for_load_state()
                obs, reward, term, trunc, info = env.step(action)
                done = term or trunc
                if not done:
                    shown = sorted(page.locator("button").all_inner_texts())
                    labels = [a[len("click[") : -1] for a in info["available_actions"]]
                    on_search = env.unwrapped.state.page == "search"
                    assert shown == (["Search"] if on_search else sorted(labels))
            assert reward == 1.0
            body = page.inner_text("body")
            assert "Thank you for shopping with us!" in body
            assert info["score_details"]["purchased_asin"] in body
        finally:
            browser.close()


# ---------------------------------------------------------------------- hardening (issue 18)
BAD_IDS = ["fixed_500", "ood_999999", "bad%20id", "a" * 65, "fixed_%D9%A3"]


@pytest.mark.parametrize("session", BAD_IDS)
def test_unknown_ids_are_404_pages_that_say_why(client, session):
    for method, path in [("GET", f"/{session}"), ("GET", f"/{session}/reset"),
                         ("POST", f"/{session}/act"), ("POST", f"/{session}/0/act"),
                         ("GET", f"/{session}/0")]:  # fmt: skip
        r = client.request(method, path, data={"action": "click[Buy Now]"}, follow_redirects=True)
        assert r.status_code == 404, (method, path)
        assert "Expect" in r.text, (method, path)


def test_steps_a_visitor_has_not_reached_are_404(client):
    client.get("/fixed_2/reset")
    for path in ["/fixed_2/1", "/fixed_2/x", "/fixed_2/-1", "/fixed_2/" + "9" * 30]:
        r = client.get(path)
        assert r.status_code == 404 and ("Expect" in r.text or "not a page" in r.text), path
    assert client.post("/fixed_2/7/act", data={"action": "search", "query": "x"}).status_code == 404


def test_each_visitor_has_its_own_episode():
    from starlette.testclient import TestClient

    app = create_app(SiteConfig())
    with TestClient(app) as alice, TestClient(app) as bob:
        alice.post("/fixed_0/0/act", data={"action": "search", "query": "party mix"})
        assert "Total results" in alice.get("/fixed_0", follow_redirects=True).text
        page = bob.get("/fixed_0", follow_redirects=True)
        assert "Total results" not in page.text and 'id="search_input"' in page.text
        episodes = len(app.state.sessions._episodes)
        for _ in range(20):  # anonymous readers see the start page and store nothing
            bob.cookies.clear()
            assert "Total results" not in bob.get("/fixed_0/0").text
        assert len(app.state.sessions._episodes) == episodes == 1


def test_each_page_has_its_own_url_so_back_and_reload_work(client):
    env = expert_env("test", 4)
    client.get("/fixed_4/reset")
    urls = ["/fixed_4/0"]
    for _ in range(3):  # search, open a product, choose an option or buy
        action = env.unwrapped.expert_action()
        form = ({"action": "search", "query": action[len("search[") : -1]}
                if action.startswith("search[") else {"action": action})  # fmt: skip
        r = client.post(f"{urls[-1]}/act", data=form, follow_redirects=True)
        urls.append(r.url.path)
        env.step(action)
    assert urls == [f"/fixed_4/{i}" for i in range(4)]
    pages = [client.get(u).text for u in urls]
    assert [client.get(u).text for u in urls] == pages  # reload: the same page
    assert 'action="/fixed_4/1/act"' in pages[1] and "Total results" in pages[1]
    # act from an earlier page (after Back): the episode continues from there
    r = client.post("/fixed_4/1/act", data={"action": "click[Back to Search]"},
                    follow_redirects=True)  # fmt: skip
    assert r.url.path == "/fixed_4/2" and 'id="search_input"' in r.text
    assert client.get("/fixed_4/3").status_code == 404  # the old forward page is gone


@pytest.mark.browser
def test_back_and_reload_in_headless_chromium():
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium (run `make install`)")
    from playwright.sync_api import sync_playwright

    with running(SiteConfig(port=0)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/fixed_3/reset")
            page.fill("#search_input", "party mix")
            page.press("#search_input", "Enter")
            page.wait_for_load_state()
            assert page.url.endswith("/fixed_3/1") and "Total results" in page.inner_text("body")
            page.go_back()
            assert page.url.endswith("/fixed_3/0") and page.locator("#search_input").count() == 1
            page.go_forward()
            page.reload()
            assert page.url.endswith("/fixed_3/1") and "Total results" in page.inner_text("body")
        finally:
            browser.close()
