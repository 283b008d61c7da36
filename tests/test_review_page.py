"""The review page (issue 20): its endpoints over HTTP (listing, pictures, answers and every refusal),
``fer-stream review DIR`` as a command, the monitor's /review mount, and the page in a real browser."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXPRESSIONS, FACES, LABELS, ROOT, wait_until

from fer_stream.io.review import NOT_A_FACE, SKIP, ReviewStore
from fer_stream.serve.dashboard import PAGE as DASHBOARD
from fer_stream.serve.metrics import Metrics
from fer_stream.serve.monitor import Monitor
from fer_stream.serve.review import MAX_BODY, MAX_LIMIT, PAGE
from fer_stream.serve.review_server import ReviewServer

WAIT = 120.0  # generous: the machine may be busy
TOKEN = "review-page-token-0123456789"
FOREIGN = (403, b"answers are taken from this server's own page only\n")
SCREENSHOT = os.environ.get("FER_STREAM_REVIEW_SCREENSHOT", "")  # where to keep a copy of the page's screenshot, to look at


def _probs(rng: np.random.Generator, top: str, conf: float) -> dict[str, float]:
    rest = rng.dirichlet(np.ones(len(LABELS) - 1)) * (1 - conf)
    others = [label for label in LABELS if label != top]
    probs = {top: conf, **{label: float(p) for label, p in zip(others, rest)}}
    return {k: round(v, 6) for k, v in sorted(probs.items(), key=lambda kv: -kv[1])}


def _add(store: ReviewStore, i: int, crop: np.ndarray, context: np.ndarray | None, conf: float, top: str = "happy") -> str:
    rng = np.random.default_rng(i)
    record = {
        "source": "lobby.mp4",
        "source_id": "lobby",
        "model": "samples/models/fer2013-video",
        "threshold": 0.73,
        "time": round(2.0 * i, 3),
        "wall": 1_800_000_000.0 + i,
        "frame": 50 * i,
        "track": i % 3 + 1,
        "box": [10, 10, 48, 48],
        "score": 0.9,
        "label": top,
        "confidence": conf,
        "flagged": True,
        "probs": _probs(rng, top, conf),
    }
    return store.add(record, crop, context)


def _synthetic_store(root: Path, n: int = 6) -> tuple[ReviewStore, list[str]]:
    """``n`` faces (gradient crops of different sizes); ids in the order added (oldest first)."""
    store = ReviewStore.open(root, create=True)
    ids = []
    for i in range(n):
        crop = np.zeros((40 + i, 32 + i, 3), np.uint8)
        crop[..., 0] = np.linspace(0, 255, 32 + i, dtype=np.uint8)
        crop[..., 1] = 40 * i
        context = np.full((120, 96, 3), 30 * i, np.uint8) if i % 2 == 0 else None
        ids.append(_add(store, i, crop, context, conf=round(0.6 - 0.05 * ((i * 5) % n), 4), top=LABELS[i % len(LABELS)]))
    return store, ids


def _real_store(root: Path, n: int = 8) -> tuple[ReviewStore, list[str]]:
    """``n`` faces cut from ../shared: FER2013 crops (their cut-out: the crop on a frame around it) and one photo."""
    from PIL import Image

    store = ReviewStore.open(root, create=True)
    ids = []
    photo = np.asarray(Image.open(FACES / "one_face.jpg").convert("RGB"))
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        if i == 3:
            crop, context = photo[116:291, 97:272], photo
        else:
            gray = np.asarray(Image.open(sorted((EXPRESSIONS / label).glob("*.jpg"))[i]).convert("L"))
            crop = np.repeat(np.repeat(np.stack([gray] * 3, -1), 2, 0), 2, 1)  # 96x96
            context = None if i == 5 else np.pad(crop, ((96, 96), (96, 96), (0, 0)), constant_values=70 + 10 * i)
        ids.append(_add(store, i, np.ascontiguousarray(crop), context, conf=round(0.35 + 0.04 * ((i * 5) % n), 4), top=label))
    return store, ids


def _http(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        c.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body is not None and "Content-Length" not in (headers or {}):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        if body is not None:
            c.send(body)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def _post(port: int, payload: object, headers: dict[str, str] | None = None, path: str = "/review/api/labels") -> tuple[int, bytes]:
    h = {"Content-Type": "application/json", **(headers or {})}
    code, _, body = _http(port, "POST", path, json.dumps(payload).encode(), h)
    return code, body


def _faces(port: int, query: str = "", headers: dict[str, str] | None = None) -> dict:
    code, head, body = _http(port, "GET", "/review/api/faces" + query, headers=headers)
    assert code == 200 and head["Content-Type"] == "application/json", body
    return json.loads(body)


@pytest.fixture
def served(tmp_path):
    store, ids = _synthetic_store(tmp_path / "review")
    with ReviewServer(store, "127.0.0.1", 0, by="lead", head_timeout=2.0, timeout=5.0) as server:
        yield store, ids, server.server.server_address[1]


def test_the_listing_orders_filters_and_bounds_the_faces(served):
    store, ids, port = served
    data = _faces(port, "?filter=all")
    assert [f["id"] for f in data["faces"]] == ids[::-1]  # newest (wall clock) first
    assert data["matching"] == len(ids) and data["counts"] == {"faces": 6, "reviewed": 0, "unreviewed": 6}
    assert data["labels"] == sorted(LABELS) == LABELS and data["marks"] == [NOT_A_FACE, SKIP] and data["by"] == "lead"
    assert data["colors"]["happy"] == "#2ca02c"
    first = data["faces"][-1]  # the oldest
    face = store.face(ids[0])
    assert first["time"] == 0.0 and first["track"] == 1 and first["source_id"] == "lobby" and first["label"] == LABELS[0]
    assert first["top"] == [[k, round(v, 4)] for k, v in list(face["probs"].items())[:3]]
    assert first["top"][0][1] >= first["top"][1][1] >= first["top"][2][1]
    assert first["picture"] == f"faces/{ids[0]}.jpg" and first["context"] == f"faces/{ids[0]}.context.jpg"
    assert data["faces"][-2]["context"] is None and first["answer"] is None  # face 1 has no cut-out
    least = _faces(port, "?filter=all&order=least_confident")["faces"]
    confs = [f["confidence"] for f in least]
    assert confs == sorted(confs) and len(set(confs)) > 2

    store.label(ids[1], "sad", by="ana")
    store.label(ids[2], NOT_A_FACE, by="bo")
    unreviewed = _faces(port)  # the default: unreviewed, newest first
    assert [f["id"] for f in unreviewed["faces"]] == [ids[5], ids[4], ids[3], ids[0]]
    reviewed = _faces(port, "?filter=reviewed")["faces"]
    assert [(f["id"], f["answer"]["label"], f["answer"]["by"]) for f in reviewed] == [(ids[2], NOT_A_FACE, "bo"), (ids[1], "sad", "ana")]
    assert _faces(port)["counts"] == {"faces": 6, "reviewed": 2, "unreviewed": 4, NOT_A_FACE: 1, "sad": 1}
    two = _faces(port, "?filter=all&limit=2")
    assert [f["id"] for f in two["faces"]] == [ids[5], ids[4]] and two["matching"] == 6
    assert len(_faces(port, f"?filter=all&limit={MAX_LIMIT}")["faces"]) == 6


@pytest.mark.parametrize(
    "query, reason",
    [
        ("?limit=0", b"limit must be a whole number from 1 to 500\n"),
        (f"?limit={MAX_LIMIT + 1}", b"limit must be a whole number from 1 to 500\n"),
        ("?limit=-3", b"limit must be a whole number from 1 to 500\n"),
        ("?limit=ten", b"limit must be a whole number from 1 to 500\n"),
        ("?order=oldest", b"order must be newest or least_confident\n"),
        ("?filter=mine", b"filter must be unreviewed, all, reviewed\n"),
    ],
)
def test_a_listing_query_out_of_bounds_is_a_400_saying_why(served, query, reason):
    code, head, body = _http(served[2], "GET", "/review/api/faces" + query)
    assert (code, body, head["Content-Type"]) == (400, reason, "text/plain")


def test_an_answer_is_appended_and_null_undoes_it(served):
    store, ids, port = served
    code, body = _post(port, {"id": ids[0], "label": "happy", "by": "ana"})
    assert code == 200, body
    got = json.loads(body)
    assert got["answer"]["id"] == ids[0] and got["answer"]["label"] == "happy" and got["counts"]["reviewed"] == 1
    assert _post(port, {"id": ids[1], "label": SKIP})[0] == 200  # no name: the server's --by
    assert _post(port, {"id": ids[0], "label": None, "by": "ana"})[0] == 200
    lines = [json.loads(line) for line in (store.root / "labels.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"], r["by"]) for r in lines] == [(ids[0], "happy", "ana"), (ids[1], SKIP, "lead"), (ids[0], None, "ana")]
    answers = store.answers()
    assert set(answers) == {ids[1]} and answers[ids[1]].label == SKIP and answers[ids[1]].by == "lead"
    assert _post(port, {"id": ids[2], "label": "sad", "by": "ana"})[0] == 200
    assert _post(port, {"id": ids[2], "label": "fear", "by": "bo"})[0] == 200  # another reviewer: the latest wins
    assert store.answers()[ids[2]].label == "fear" and _faces(port, "?filter=reviewed")["faces"][0]["answer"]["by"] == "bo"


def test_bad_answers_are_refused_with_one_line_each(served):
    store, ids, port = served
    fid = ids[0]
    cases = [
        ({"id": fid, "label": "bored"}, 400, b"label must be one of "),
        ({"id": fid, "label": 3}, 400, b"label must be a label, not_a_face, skip or null (undo)\n"),
        ({"id": "0123456789abcdef", "label": "happy"}, 400, b"no face 0123456789abcdef in this store\n"),
        ({"id": "../../etc", "label": "happy"}, 400, b"not a face id\n"),
        ({"label": "happy"}, 400, b'send {"id": FACE_ID, "label": LABEL or null, "by": NAME}\n'),
        (["not", "an", "object"], 400, b'send {"id"'),
        ({"id": fid, "label": "happy", "by": "x" * 41}, 400, b"reviewer name: at most 40 letters"),
        ({"id": fid, "label": "happy", "by": 7}, 400, b"by must be the reviewer's name\n"),
    ]
    for payload, code, reason in cases:
        got = _post(port, payload)
        assert got[0] == code and got[1].startswith(reason) and got[1].count(b"\n") == 1, (payload, got)
    post = lambda body, headers: _http(port, "POST", "/review/api/labels", body, headers)
    ok = json.dumps({"id": fid, "label": "happy"}).encode()
    assert post(b"{not json", {"Content-Type": "application/json"})[::2] == (400, b"body is not JSON\n")
    assert post(b"\xff\xfe", {"Content-Type": "application/json"})[::2] == (400, b"body is not JSON\n")
    assert post(ok, {"Content-Type": "text/plain"})[::2] == (415, b"send the body as application/json\n")
    assert post(ok, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert post(ok, {})[0] == 415
    assert post(ok, {"Content-Type": "application/json; charset=utf-8"})[0] == 200
    big = json.dumps({"id": fid, "label": "happy", "by": "a" * MAX_BODY}).encode()
    assert post(big, {"Content-Type": "application/json"})[::2] == (413, b"body too large: at most 4096 bytes\n")
    # Content-Length is checked before a byte of the body is read: a huge one is refused at once.
    assert post(b"", {"Content-Type": "application/json", "Content-Length": str(10**12)})[0] == 413
    assert post(b"", {"Content-Type": "application/json", "Content-Length": "12x"})[0] == 400
    no_length = _raw(port, b"POST /review/api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n")
    assert no_length.startswith(b"HTTP/1.0 411 ") and no_length.endswith(b"Content-Length required\n")
    chunked = b"Transfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n0\r\n\r\n"
    got = _raw(port, b"POST /review/api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + chunked)
    assert got.startswith(b"HTTP/1.0 411 ")
    for origin in ("http://attacker.example", "null", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}"):
        assert _post(port, {"id": fid, "label": "happy"}, {"Origin": origin}) == FOREIGN, origin
    assert _post(port, {"id": fid, "label": "happy"}, {"Origin": f"http://127.0.0.1:{port}"})[0] == 200  # its own page
    assert [r["label"] for r in store.labels_log.records()] == ["happy", "happy"]  # nothing refused was written


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_methods_hosts_tokens_and_pictures(tmp_path):
    store, ids = _synthetic_store(tmp_path / "review")
    with ReviewServer(store, "127.0.0.1", 0, token=TOKEN) as server:
        port = server.server.server_address[1]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert _http(port, "GET", "/review/api/faces")[0] == 401  # no token
        assert _http(port, "GET", "/review")[0] == 401 and _http(port, "GET", f"/review/faces/{ids[0]}.jpg")[0] == 401
        assert _post(port, {"id": ids[0], "label": "happy"})[0] == 401
        assert _http(port, "GET", "/review/api/faces", headers=auth, host="attacker.example")[0] == 421  # DNS rebinding
        assert _faces(port, f"?token={TOKEN}&limit=1")["faces"]
        for path in ("/", "/review", "/review/"):
            code, head, body = _http(port, "GET", f"{path}?token={TOKEN}")
            assert code == 200 and head["Content-Type"] == "text/html; charset=utf-8" and body == PAGE.encode(), path
        code, head, body = _http(port, "GET", "/review/api/labels", headers=auth)
        assert (code, head["Allow"]) == (405, "POST")
        status = _raw(port, b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").split(b"\r\n")[0]
        assert status == b"HTTP/1.0 501 Unsupported method ('POST')"  # POST goes to the labels only
        assert _http(port, "PUT", "/review/api/labels", b"{}", auth)[0] == 501
        assert _http(port, "GET", "/healthz", headers=auth)[:3:2] == (404, b"not found; the review page is at /review\n")

        import cv2

        code, head, body = _http(port, "GET", f"/review/faces/{ids[0]}.jpg", headers=auth)
        picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert code == 200 and head["Content-Type"] == "image/jpeg" and picture.shape == (40, 32, 3)
        code, _, body = _http(port, "GET", f"/review/faces/{ids[0]}.context.jpg", headers=auth)
        assert code == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (120, 96, 3)
        (store.root / "secret.jpg").write_bytes(b"not for you")
        os.symlink(store.root / "secret.jpg", store.root / "faces" / "0123456789abcdef.jpg")
        store.drop(ids[2])
        for path in (
            f"/review/faces/{ids[1]}.context.jpg",  # it has none
            f"/review/faces/{ids[2]}.jpg",  # dropped
            "/review/faces/../review.jsonl",
            "/review/faces/..%2freview.jsonl",
            "/review/faces/%2e%2e%2fsecret.jpg",
            "/review/faces/..%2f..%2fsecret.jpg",
            "/review/faces/0123456789abcdef.jpg",  # a link out of the store
            f"/review/faces/{ids[0]}.png",
            f"/review/faces/{ids[0]}.jpg/x",
            f"/review/faces/{ids[0].upper()}.jpg",
            "/review/review.jsonl",
            "/review/labels.jsonl",
            "/review/../review.jsonl",
        ):
            code, _, body = _http(port, "GET", path, headers=auth)
            assert code == 404 and b"jsonl" not in body and b"not for you" not in body, path


def test_a_trickled_body_is_dropped_by_its_deadline(tmp_path):
    store, ids = _synthetic_store(tmp_path / "review", n=1)
    with ReviewServer(store, "127.0.0.1", 0, head_timeout=1.0, timeout=5.0) as server:
        port = server.server.server_address[1]
        head = b"POST /review/api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(head)
            started = time.monotonic()
            closed = False
            for _ in range(400):  # a byte every 0.5 s would take 200 s
                try:
                    s.sendall(b" ")
                    if select.select([s], [], [], 0.5)[0] and s.recv(100) == b"":
                        closed = True
                        break
                except OSError:
                    closed = True
                    break
            assert closed and time.monotonic() - started < 150
    assert not (store.root / "labels.jsonl").exists()


def test_the_monitor_mounts_the_review_page_only_with_a_store(tmp_path):
    with Monitor("127.0.0.1", 0, Metrics()) as mon:
        port = mon.server.server_address[1]
        for path in ("/review", "/review/api/faces"):
            assert _http(port, "GET", path)[0] == 404, path
        status = _raw(port, b"POST /review/api/labels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").split(b"\r\n")[0]
        assert status == b"HTTP/1.0 501 Unsupported method ('POST')"  # as before: no store, no POST
        assert "review" not in mon.dashboard_state()
    store, ids = _synthetic_store(tmp_path / "review", n=3)
    with Monitor("127.0.0.1", 0, Metrics(), starting=True, review=store) as mon:
        port = mon.server.server_address[1]
        assert mon.dashboard_state()["review"] == {"faces": 3, "reviewed": 0, "unreviewed": 3}  # while starting too
        mon.ready()
        assert _http(port, "GET", "/review")[2] == PAGE.encode() and _http(port, "GET", "/")[2] == DASHBOARD.encode()
        assert [f["id"] for f in _faces(port)["faces"]] == ids[::-1]
        assert _post(port, {"id": ids[0], "label": "angry", "by": "ana"})[0] == 200
        assert _http(port, "GET", f"/review/faces/{ids[0]}.jpg")[0] == 200
        assert _http(port, "GET", "/review/faces/../review.jsonl")[0] == 404
        assert _http(port, "GET", "/review/api/faces", host="attacker.example")[0] == 421
        state = json.loads(_http(port, "GET", "/api/state")[2])
        assert state["review"] == {"faces": 3, "reviewed": 1, "unreviewed": 2, "angry": 1}
    assert store.answers()[ids[0]].label == "angry" and store.answers()[ids[0]].by == "ana"
    assert 'id="review"' in DASHBOARD and "Review flagged faces (" in DASHBOARD


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FER_STREAM_SERVE_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


def _start_review(procs, args: list[str]) -> tuple[subprocess.Popen, str]:
    """``fer-stream review ARGS`` running; its page's URL, read from the line it prints on stderr."""
    proc = procs.start([sys.executable, "-m", "fer_stream", "review", *args], env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if select.select([proc.stderr], [], [], 1.0)[0]:
            line = proc.stderr.readline()
            if "review page at " in line:
                return proc, line.split("review page at ", 1)[1].split()[0].rstrip(":")
            assert line, f"fer-stream review ended: {proc.wait()}"
    raise AssertionError("fer-stream review printed no URL")


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nope"], "review store '{tmp}/nope' does not exist; make one with fer-stream --review {tmp}/nope ..."),
        (["{tmp}"], "'{tmp}' is not a review store (no review.jsonl); make one with fer-stream --review {tmp} ..."),
        (["{store}", "--by", "a/b"], "--by 'a/b': a reviewer name has at most 40 letters, digits, spaces, '.', '@' or '-'"),
        (["{store}", "--token", "short"], "the serve token has 5 characters, too few to be safe;"),
        (["{store}", "--serve", "127.0.0.1:http"], "--serve '127.0.0.1:http' must be PORT or HOST:PORT"),
    ],
)
def test_the_command_refuses_what_it_cannot_serve_in_one_line(tmp_path, procs, args, message):
    _synthetic_store(tmp_path / "store", n=1)
    fill = lambda s: s.format(tmp=tmp_path / "empty", store=tmp_path / "store")
    (tmp_path / "empty").mkdir()
    command = [sys.executable, "-m", "fer_stream", "review", *map(fill, args)]
    r = procs.run(command, env=_env(), capture_output=True, text=True, timeout=WAIT)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("fer-stream: error: " + fill(message)), r.stderr


def test_the_command_serves_on_a_free_port_and_stops_cleanly(tmp_path, procs):
    store, ids = _synthetic_store(tmp_path / "store", n=2)
    proc, url = _start_review(procs, [str(store.root), "--serve", "127.0.0.1:0", "--by", "lead"])
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert url == f"http://127.0.0.1:{port}/review" and port != 0
    assert _post(port, {"id": ids[0], "label": "happy"})[0] == 200
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(WAIT) == 0
    assert proc.stderr.read().strip() == "fer-stream: review server stopped; 1 of 2 faces reviewed"
    assert store.answers()[ids[0]].by == "lead"


# -- the page in a real browser ----------------------------------------------------------------------------


def _chrome(tmp_path: Path):
    """A Selenium session with Debian's Chromium and chromedriver (never Selenium Manager); a skip without them."""
    browser, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (browser.is_file() and driver_path.is_file()):
        if os.environ.get("FER_STREAM_REQUIRE_BROWSER") == "1":
            raise AssertionError("FER_STREAM_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed; see .ci/run")
        pytest.skip("chromium and chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"  # Selenium never phones home
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=str(driver_path), popen_kw={"start_new_session": True})
    return webdriver.Chrome(service=service, options=options), service


def _stop_chrome(driver, service) -> None:
    try:
        driver.quit()
    finally:
        if service.process is not None:  # chromedriver's group: Chromium and its helpers too
            try:
                os.killpg(service.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            service.process.wait()


def test_the_page_in_a_real_browser_labels_with_clicks_and_keys(tmp_path, procs):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    if not (FACES / "one_face.jpg").is_file():
        pytest.skip(f"test data not found at {FACES.parent}")
    store, _ = _real_store(tmp_path / "review")
    proc, url = _start_review(procs, [str(store.root), "--serve", "127.0.0.1:0", "--token", TOKEN])
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    newest = [f["id"] for f in _faces(port, f"?token={TOKEN}")["faces"]]
    driver, service = _chrome(tmp_path)
    try:
        driver.get(f"{url}?token={TOKEN}")
        rendered = lambda: int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-ok") or 0) > 0
        wait_until(rendered, WAIT, "the page to render the faces")
        # Read in one script: the page re-renders every poll, so an element found in one call may be gone in the next.
        card_ids = lambda: driver.execute_script("return [...document.querySelectorAll('article.card')].map(c => c.dataset.id)")
        assert card_ids() == newest
        keys = driver.find_element(By.ID, "labelkeys").text
        assert keys.startswith("1 angry, 2 disgust, 3 fear") and keys.endswith("7 surprise")
        assert driver.find_element(By.CSS_SELECTOR, "article.card.sel").get_attribute("data-id") == newest[0]
        first = driver.find_element(By.ID, "face-" + newest[0])
        assert len(first.find_elements(By.CSS_SELECTOR, ".top li")) == 3 and "%" in first.find_element(By.CSS_SELECTOR, ".top").text
        assert [b.text.replace("\n", " ") for b in first.find_elements(By.CSS_SELECTOR, ".btns button")][-2:] == ["n not a face", "s skip"]
        loaded = "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
        wait_until(lambda: driver.execute_script(loaded), WAIT, "every picture to load")

        driver.find_element(By.ID, "by").send_keys("ana")
        first.find_element(By.CSS_SELECTOR, 'button[data-label="happy"]').click()  # card 0: a click
        ActionChains(driver).send_keys("3").perform()  # card 1: fear (the next card is selected after an answer)
        ActionChains(driver).send_keys("n").perform()  # card 2: not a face
        ActionChains(driver).send_keys("s").perform()  # card 3: skip
        ActionChains(driver).send_keys("u").perform()  # ... undone
        wait_until(lambda: len(store.labels_log.records()) == 5, WAIT, "five answers in labels.jsonl")
        sel = lambda: driver.execute_script("const c = document.querySelector('article.card.sel'); return c && c.dataset.id")
        wait_until(lambda: sel() == newest[3], WAIT, "the undone card to be selected")
        ActionChains(driver).send_keys("j").perform()
        wait_until(lambda: sel() == newest[4], WAIT, "j to select the next card")
        ActionChains(driver).send_keys("k").perform()
        wait_until(lambda: sel() == newest[3], WAIT, "k to select the card before")
        ActionChains(driver).send_keys("7").perform()  # card 3 after all: surprise
        wait_until(lambda: len(store.labels_log.records()) == 6, WAIT, "the sixth answer")
        records = store.labels_log.records()
        assert [(r["id"], r["label"], r["by"]) for r in records] == [
            (newest[0], "happy", "ana"),
            (newest[1], "fear", "ana"),
            (newest[2], NOT_A_FACE, "ana"),
            (newest[3], SKIP, "ana"),
            (newest[3], None, "ana"),
            (newest[3], "surprise", "ana"),
        ]
        answers = store.answers()
        assert {fid: a.label for fid, a in answers.items()} == {
            newest[0]: "happy",
            newest[1]: "fear",
            newest[2]: NOT_A_FACE,
            newest[3]: "surprise",
        }
        wait_until(lambda: card_ids() == newest[4:], WAIT, "answered faces to leave the unreviewed list")

        # Another reviewer answers meanwhile: the page shows it within a poll or two.
        Select(driver.find_element(By.ID, "filter")).select_by_value("all")
        assert _post(port, {"id": newest[5], "label": "sad", "by": "bo"}, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        answer_of = lambda fid: driver.execute_script(f"const a = document.querySelector('#face-{fid} .ans'); return a && a.innerText")
        wait_until(lambda: answer_of(newest[5]) == "answer: sad by bo", WAIT, "bo's answer on the page")
        assert answer_of(newest[0]) == "answer: happy by ana" and answer_of(newest[2]) == "answer: not a face by ana"
        assert driver.find_element(By.CSS_SELECTOR, f'#face-{newest[1]} button[data-label="fear"]').get_attribute("aria-pressed") == "true"
        driver.find_element(By.ID, "order-least").click()
        least = [f["id"] for f in _faces(port, f"?token={TOKEN}&filter=all&order=least_confident")["faces"]]
        wait_until(lambda: card_ids() == least, WAIT, "the least confident faces first")
        assert "3 unreviewed" in driver.find_element(By.ID, "counts").text
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") is None  # no script error
        driver.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "review-page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if SCREENSHOT:
            driver.save_screenshot(SCREENSHOT)
    finally:
        _stop_chrome(driver, service)
    procs.stop(proc, signal.SIGTERM)
    assert proc.returncode == 0


def test_the_dashboard_links_to_the_review_page_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.by import By

    store, ids = _synthetic_store(tmp_path / "review", n=3)
    store.label(ids[0], SKIP, by="ana")
    with Monitor("127.0.0.1", 0, Metrics(), token=TOKEN, review=store) as mon:
        driver, service = _chrome(tmp_path)
        try:
            driver.get(f"{mon.url}/?token={TOKEN}")
            link = lambda: driver.find_element(By.ID, "review")
            wait_until(lambda: link().is_displayed(), WAIT, "the dashboard's link to the review page")
            assert link().text == "Review flagged faces (2 unreviewed)"
            assert link().get_attribute("href") == f"{mon.url}/review?token={TOKEN}"
            link().click()
            wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "article.card")) == 2, WAIT, "the review page's cards")
            assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-error") is None
        finally:
            _stop_chrome(driver, service)
