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
