"""Helpers to run outpost's states through a real salt-call and read their results."""

import json
import urllib.request


def single(salt_call, function, test=False, **kwargs):
    """Run one state with ``state.single``; return its one result dict."""
    args = [f"{key}={json.dumps(value)}" for key, value in kwargs.items()]
    if test:
        args.append("test=True")
    ret = salt_call.run("state.single", function, *args)
    assert isinstance(ret.data, dict), ret
    (result,) = ret.data.values()
    return result


def healthz(port, timeout=3):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as answer:
        return json.loads(answer.read())


def page(port, path="/", timeout=3):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read().decode()
