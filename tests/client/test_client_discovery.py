"""Finding the server: url argument or NBWS_URL, the kernel's Jupyter server runtime file,
then the embedded server.

The runtime-file tests read files that name no real server, so they pass a ``probe`` that
says "this server has nbws"; the order against real servers is in test_embedded.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbws.client.discovery import Endpoint, discover, normalize_url
from nbws.client.errors import ServerNotFound


def has_nbws(found: Endpoint) -> str | None:
    return None


def write_runtime_file(folder: Path, pid: int, **info: object) -> Path:
    data = {
        "base_url": "/",
        "hostname": "127.0.0.1",
        "port": 8888,
        "secure": False,
        "sock": "",
        "token": "tok",
        "url": "http://127.0.0.1:8888/",
        "pid": pid,
    }
    data.update(info)
    path = folder / f"jpserver-{pid}.json"
    path.write_text(json.dumps(data))
    return path


def test_runtime_file_of_the_parent_server(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 4242, port=9999, base_url="/user/ada/", token="secret")
    found = discover(env={"JPY_PARENT_PID": "4242"}, runtime_dir=tmp_path, probe=has_nbws)
    assert found.url == "ws://127.0.0.1:9999/user/ada/nbws/ws"
    assert found.token == "secret"
    assert "jpserver-4242.json" in found.source
    assert found.kind == "jupyter"


def test_nbws_url_wins_over_the_runtime_file(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 7)
    env = {"JPY_PARENT_PID": "7", "NBWS_URL": "http://10.0.0.1:1/", "NBWS_TOKEN": "x"}
    found = discover(env=env, runtime_dir=tmp_path, probe=has_nbws)
    assert found.url == "ws://10.0.0.1:1/nbws/ws" and found.token == "x"
    assert found.kind == "explicit" and found.source == "NBWS_URL"


def test_server_listening_on_all_interfaces_is_reached_on_loopback(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 8, hostname="0.0.0.0", secure=True)
    found = discover(env={"JPY_PARENT_PID": "8"}, runtime_dir=tmp_path, probe=has_nbws)
    assert found.url == "wss://127.0.0.1:8888/nbws/ws"


def test_explicit_token_wins_over_the_runtime_file(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 9)
    found = discover(
        token="mine", env={"JPY_PARENT_PID": "9"}, runtime_dir=tmp_path, probe=has_nbws
    )
    assert found.token == "mine"


def test_server_without_token_gets_the_hub_token(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 11, token="", base_url="/user/ada/")
    env = {"JPY_PARENT_PID": "11", "JUPYTERHUB_API_TOKEN": "hub"}
    found = discover(env=env, runtime_dir=tmp_path, probe=has_nbws)
    assert found.url == "ws://127.0.0.1:8888/user/ada/nbws/ws" and found.token == "hub"


def test_missing_runtime_file_falls_back_to_nbws_url(tmp_path: Path) -> None:
    env = {"JPY_PARENT_PID": "123", "NBWS_URL": "http://127.0.0.1:8765", "NBWS_TOKEN": "t"}
    found = discover(env=env, runtime_dir=tmp_path, probe=has_nbws)
    assert found.url == "ws://127.0.0.1:8765/nbws/ws"
    assert found.token == "t" and found.source == "NBWS_URL"


def test_explicit_url_wins_and_takes_the_env_token() -> None:
    env = {"NBWS_URL": "http://elsewhere:1/", "NBWS_TOKEN": "envtok"}
    found = discover("https://example.org:8443/base", env=env)
    assert found.url == "wss://example.org:8443/base/nbws/ws"
    assert found.token == "envtok"


def test_nothing_found_names_everything_tried(tmp_path: Path) -> None:
    with pytest.raises(ServerNotFound) as info:
        discover(env={"JPY_PARENT_PID": "31337"}, runtime_dir=tmp_path, embedded=False)
    text = str(info.value)
    assert "JPY_PARENT_PID=31337" in text
    assert str(tmp_path / "jpserver-31337.json") in text
    assert "NBWS_URL is not set" in text
    assert "url=" in text


def test_not_in_a_kernel_says_so() -> None:
    with pytest.raises(ServerNotFound, match="JPY_PARENT_PID is not set"):
        discover(env={}, embedded=False)


def test_a_server_without_nbws_is_skipped_and_says_why(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 12)
    with pytest.raises(ServerNotFound, match="no nbws extension"):
        discover(
            env={"JPY_PARENT_PID": "12"},
            runtime_dir=tmp_path,
            embedded=False,
            probe=lambda found: "it has no nbws extension (nbws/api/health is a 404)",
        )


def test_unix_socket_server_is_refused_clearly(tmp_path: Path) -> None:
    write_runtime_file(tmp_path, 5, sock="/tmp/jupyter.sock")
    with pytest.raises(ServerNotFound, match="Unix socket"):
        discover(env={"JPY_PARENT_PID": "5"}, runtime_dir=tmp_path, probe=has_nbws)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:1", "ws://h:1/nbws/ws"),
        ("http://h:1/", "ws://h:1/nbws/ws"),
        ("https://h/lab/", "wss://h/lab/nbws/ws"),
        ("ws://h:1/nbws/ws", "ws://h:1/nbws/ws"),
        ("ws://h:1/base/nbws/ws/", "ws://h:1/base/nbws/ws"),
        ("http://h:1/?token=abc", "ws://h:1/nbws/ws?token=abc"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_normalize_url_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="not an http"):
        normalize_url("ftp://h/")


def test_endpoint_repr_and_str_never_show_the_token() -> None:
    found = Endpoint("ws://127.0.0.1:1/nbws/ws", "s3cret-token", "the url argument", "explicit")
    for text in (repr(found), str(found), f"{found}", repr([found])):
        assert "s3cret-token" not in text
        assert "ws://127.0.0.1:1/nbws/ws" in text and "explicit" in text


def test_endpoint_repr_redacts_a_token_in_the_url() -> None:
    found = discover("http://h:1/?token=s3cret-token", env={})
    assert "s3cret-token" in found.url
    assert "s3cret-token" not in repr(found)


def test_connect_snippet_says_what_another_process_needs() -> None:
    found = Endpoint("ws://127.0.0.1:5/base/nbws/ws", "s3cret-token", "x", "embedded")
    snippet = found.connect_snippet("prices")
    assert "url='http://127.0.0.1:5/base/'" in snippet
    assert "token='s3cret-token'" in snippet
    assert "NBWS_URL=http://127.0.0.1:5/base/" in snippet and "NBWS_TOKEN=s3cret-token" in snippet
    assert "nbws.stream('prices'" in snippet
