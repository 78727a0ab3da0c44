"""Several annotation app servers on one store, as on several machines behind one database: two Voila processes,
two annotators each signed in on their own server, labelling at overlap 1 at the same time. The queue lives in the
database, not in a server, so no item ever reaches both of them, on SQLite and on PostgreSQL."""
import random
import time

import pytest
from conftest import free_port, stop
from test_annotate_browser import LABELS, make_digit_items, shown_item, start_app

from fullstack_ml.auth import add_user
from fullstack_ml.labels import annotation_history
from fullstack_ml.store import connect

NEXT = ("(before) => { const root = document.querySelector('.fsml-annotate');"
        " const empty = document.querySelector('.fsml-empty');"
        " return (root.dataset.item && root.dataset.item !== before) || empty.textContent.startsWith('all done'); }")


def next_item(page, before: str) -> str:
    "Wait until the page shows another item (its id) or says it is all done ('')."
    page.wait_for_function(NEXT, arg=before, timeout=60_000)
    return page.get_attribute(".fsml-annotate", "data-item")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, fsml_home, monkeypatch):
    "The one store both servers use: the embedded SQLite file, or a PostgreSQL database."
    if request.param == "postgresql":
        monkeypatch.setenv("FSML_DB_URL", request.getfixturevalue("postgres_db"))
    return request.param


@pytest.mark.slow
def test_two_app_servers_never_give_one_item_to_two_annotators(database, fsml_home, browser):
    ids = make_digit_items(16)
    tokens = {name: add_user(connect(), name, "annotator") for name in ("alice", "bob")}
    servers, contexts, pages = {}, [], {}
    try:
        for name in tokens:  # one server per annotator: two processes, two kernels, one database
            port = free_port()
            servers[name] = start_app(port, fsml_home.parent / f"voila-{name}.log")
            contexts.append(browser.new_context())
            pages[name] = contexts[-1].new_page()
            pages[name].goto(f"http://127.0.0.1:{port}/?token={tokens[name]}")
        on_screen = {name: shown_item(page) for name, page in pages.items()}
        seen = {name: [item] for name, item in on_screen.items()}
        rng = random.Random(0)
        while any(on_screen.values()):  # interleaved: both label at once until both pages say all done
            assert on_screen["alice"] != on_screen["bob"] or not on_screen["alice"]
            for name, page in pages.items():
                if on_screen[name]:
                    page.keyboard.press(rng.choice(LABELS))
                    on_screen[name] = next_item(page, on_screen[name])
                    seen[name].append(on_screen[name])
        deadline = time.time() + 30
        while len(labels := annotation_history(connect(), "digits").query("kind == 'label'")) < len(ids):
            assert time.time() < deadline, f"{len(labels)} of {len(ids)} labels stored"
            time.sleep(0.2)
        assert sorted(labels.item_id) == sorted(ids)  # every item labelled exactly once ...
        by_person = {name: set(rows.item_id) for name, rows in labels.groupby("annotator")}
        assert set(by_person) == {"alice", "bob"} and not by_person["alice"] & by_person["bob"]  # ... by one person
        assert not (set(seen["alice"]) & set(seen["bob"])) - {""}  # and never on both screens
    finally:
        for context in contexts:
            context.close()
        for server in servers.values():
            stop(server)
