"""No secret of a URL is shown: userinfo of any scheme, secret query values, error messages that quote them."""

from __future__ import annotations

import json

import pytest
from conftest import media_file, run_cli

from fer_stream.errors import SourceError
from fer_stream.io.reconnect import ReconnectingSource
from fer_stream.io.sources import redact, redact_text, secret_key

SECRET = "S3cr3tXyZ"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:S3cr3tXyZ@10.0.0.7:554/s1", "rtsp://admin:***@10.0.0.7:554/s1"),
        ("rtsp://a:p%40S3cr3tXyZ@[::1]:8554/x", "rtsp://a:***@[::1]:8554/x"),
        ("http://S3cr3tXyZ@cam.local/live.ts", "http://***@cam.local/live.ts"),  # a token as the userinfo
        ("HTTPS://:S3cr3tXyZ@host/a", "HTTPS://***@host/a"),
        ("rtmp://user:S3cr3tXyZ@host/live/cam", "rtmp://user:***@host/live/cam"),
        ("foo+bar://S3cr3tXyZ@host:99/x", "foo+bar://***@host:99/x"),  # any scheme
        ("rtsp://admin:pa/S3cr3tXyZ@cam/s1", "rtsp://admin:***@cam/s1"),  # a bare / in the password
        (
            "rtsp://cam/onvif?user=admin&password=S3cr3tXyZ&channel=1",
            "rtsp://cam/onvif?user=admin&password=***&channel=1",
        ),
        ("http://cam/v.cgi?usr=admin&pwd=S3cr3tXyZ", "http://cam/v.cgi?usr=admin&pwd=***"),
        ("http://cam/v.cgi?passwd=S3cr3tXyZ", "http://cam/v.cgi?passwd=***"),
        ("https://cdn/x.m3u8?token=S3cr3tXyZ&q=hd", "https://cdn/x.m3u8?token=***&q=hd"),
        ("https://cdn/x.m3u8?access_token=S3cr3tXyZ", "https://cdn/x.m3u8?access_token=***"),
        ("https://api/x?API_KEY=S3cr3tXyZ", "https://api/x?API_KEY=***"),
        ("https://api/x?apikey=S3cr3tXyZ;key=S3cr3tXyZ", "https://api/x?apikey=***;key=***"),
        ("https://s3/b/o.mp4?X-Amz-Signature=S3cr3tXyZ&X-Amz-Expires=60", "https://s3/b/o.mp4?X-Amz-Signature=***&X-Amz-Expires=60"),
        ("https://h/x?sig=S3cr3tXyZ&se=2030", "https://h/x?sig=***&se=2030"),
        ("https://h/x?client_secret=S3cr3tXyZ", "https://h/x?client_secret=***"),
        ("https://h/x?auth=S3cr3tXyZ", "https://h/x?auth=***"),
        ("https://h/x?pass%77ord=S3cr3tXyZ", "https://h/x?pass%77ord=***"),  # an encoded key is still the key
        ("srt://h:9000?streamid=cam1&passphrase=S3cr3tXyZ", "srt://h:9000?streamid=cam1&passphrase=***"),
        ("https://h/app#access_token=S3cr3tXyZ&state=1", "https://h/app#access_token=***&state=1"),
        ("udp://u:S3cr3tXyZ@239.0.0.1:1234?token=S3cr3tXyZ", "udp://u:***@239.0.0.1:1234?token=***"),
    ],
)
def test_redact_hides_userinfo_and_secret_query_values(url, shown):
    assert redact(url) == shown
    assert SECRET not in redact(url) and "%40S3cr" not in redact(url)
    assert redact(redact(url)) == redact(url)  # what is shown stays as it is


@pytest.mark.parametrize(
    "plain",
    [
        "rtsp://cam/s1",
        "rtsp://cam:554/s1?channel=1&subtype=0",
        "http://[::1]:8080/live.ts",
        "https://h/x?password=",  # nothing to hide
        "talk.mp4",
        "/videos/a?password=1.mp4",  # a file path, not a URL
        "my@file.mp4",
        "0",
        "",
    ],
)
def test_redact_leaves_what_holds_no_secret(plain):
    assert redact(plain) == plain


def test_secret_keys_are_the_names_that_look_like_secrets():
    for key in ("password", "Passwd", "pwd", "token", "key", "secret", "auth", "sig", "api_key", "access_token", "X-Api-Key"):
        assert secret_key(key), key
    for key in ("user", "channel", "subtype", "stream", "q", "width"):
        assert not secret_key(key), key


def test_redact_text_hides_secrets_quoted_in_error_messages():
    url = f"http://tok{SECRET}@cam/live.ts?user=admin&password=pw{SECRET}&api_key=k%2B{SECRET}"
    message = (
        f"Server returned 401 Unauthorized for '{url}'; "
        f"redirected to https://login/cb?access_token=at{SECRET}; "
        f"password pw{SECRET}, key k+{SECRET}"  # FFmpeg may quote a value on its own, decoded
    )
    shown = redact_text(message, url)
    assert SECRET not in shown, shown
    assert "'http://***@cam/live.ts?user=admin&password=***&api_key=***'" in shown
    assert "access_token=***" in shown and "Unauthorized" in shown
    # Without the URL: every URL in the text is still redacted.
    assert redact_text(f"cannot open 'rtsp://admin:{SECRET}@cam/s1'") == "cannot open 'rtsp://admin:***@cam/s1'"


def test_short_secrets_are_hidden_in_urls_without_garbling_the_message():
    url = "rtsp://admin:ab@cam/s1?token=xy"
    shown = redact_text(f"connection to {url} refused by the camera (about 2 s)", url)
    assert shown == "connection to rtsp://admin:***@cam/s1?token=*** refused by the camera (about 2 s)"


def test_health_of_a_camera_that_quotes_its_url_shows_no_secret():
    """/healthz and /api/state carry a source's health: its URL and last error."""
    url = f"http://{SECRET}@127.0.0.1:1/cam?user=admin&password=pw{SECRET}"

    def opener(u: str, **kwargs: object) -> object:
        raise SourceError(f"cannot open stream '{u}': 401 Unauthorized (token {SECRET})")

    src = ReconnectingSource(url, max_reconnects=1, backoff_initial=0.01, opener=opener)
    with pytest.raises(SourceError) as raised:
        list(src.frames())
    health = json.dumps(src.health().as_dict())
    assert SECRET not in health and SECRET not in str(raised.value)
    assert "http://***@127.0.0.1:1/cam?user=admin&password=***" in health


def test_a_run_on_a_url_with_secrets_prints_and_writes_none_of_them(tiny_model, cli_env, tmp_path):
    token, password, key = f"T0k{SECRET}", f"Pw{SECRET}", f"K3y{SECRET}"
    url = f"http://{token}@127.0.0.1:1/cam?user=admin&password={password}&api_key={key}"  # port 1: refused at once
    summary = tmp_path / "s.json"
    args = ["--source", f"file={media_file('portrait')}", "--source", f"cam={url}", "--max-frames", "3"]
    args += ["--max-reconnects", "1", "--summary", str(summary), "--model", str(tiny_model), "-q"]
    r = run_cli(args, cli_env, timeout=300)
    assert r.returncode == 1, r.stderr
    written = summary.read_text()
    doc = json.loads(written)
    assert doc["sources"]["cam"]["source"] == "http://***@127.0.0.1:1/cam?user=admin&password=***&api_key=***"
    assert "source cam" in r.stderr and "gave up" in r.stderr  # the failure is still told
    for secret in (token, password, key, SECRET):
        assert secret not in r.stderr and secret not in r.stdout and secret not in written
