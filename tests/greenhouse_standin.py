"""A stand-in for Greenhouse on loopback (Greenhouse cannot be reached from tests).

It plays both of Greenhouse's parts of the Assessment Partner API
(developers.greenhouse.io/assessment.html):

- as the caller: ``send_test`` posts the documented body to the partner, with a
  callback ``url`` on this server (``/integrations/testing_partners/take_home_tests/<n>``)
  and HTTP Basic auth (the partner key as the username, an empty password);
- as the receiver of "PATCH - Mark Test as Completed": it records every request it
  receives (method, path, headers, body), answers 200 (or ``answers``, then ``status``),
  and, as
  Greenhouse does upon that PATCH, asks the partner's ``test_status`` for the
  interview behind the URL, recording that answer too.
"""

from __future__ import annotations

import base64
import itertools
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

CALLBACK_PATH = "/integrations/testing_partners/take_home_tests/"


def basic(key: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{key}:{password}".encode()).decode()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Greenhouse:
    partner_url: str
    """Where the partner's endpoints are: ``<partner_url>/list_tests`` and so on."""
    api_key: str
    status: int = 200
    answers: list[int] = field(default_factory=list)
    """Statuses to answer first, one per request (a Greenhouse having a bad minute)."""
    received: list[Received] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    """``test_status`` answers fetched after each PATCH, in order."""
    interviews: dict[str, str] = field(default_factory=dict)
    """Callback path -> the partner_interview_id its send_test answered."""
    server: ThreadingHTTPServer | None = None
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(12345))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def auth(self) -> dict[str, str]:
        return {"authorization": basic(self.api_key)}

    def start(self) -> Greenhouse:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with standin._lock:
                    status = standin.answers.pop(0) if standin.answers else standin.status
                    standin.received.append(
                        Received(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                if self.command == "PATCH" and status < 300:
                    standin._poll_status(self.path)

            do_PATCH = do_POST = do_GET = do_PUT = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def list_tests(self) -> httpx.Response:
        return httpx.get(f"{self.partner_url}/list_tests", headers=self.auth(), timeout=30)

    def send_test(
        self, partner_test_id: str, *, application_id: int = 26234709, **candidate: str
    ) -> httpx.Response:
        """The documented ``send_test`` body, with a fresh callback URL on this server."""
        path = f"{CALLBACK_PATH}{next(self._numbers)}"
        body = {
            "partner_test_id": partner_test_id,
            "candidate": {
                "first_name": "Harry",
                "last_name": "Potter",
                "resume_url": "https://hogwarts.example/resume",
                "phone_number": "123-456-7890",
                "email": "hpotter@hogwarts.example",
                "greenhouse_profile_url": (
                    f"https://app.greenhouse.io/people/17681532?application_id={application_id}"
                ),
                **candidate,
            },
            "url": f"{self.url}{path}",
        }
        response = httpx.post(
            f"{self.partner_url}/send_test", json=body, headers=self.auth(), timeout=60
        )
        if response.status_code == 200:
            with self._lock:
                self.interviews[path] = response.json()["partner_interview_id"]
        return response

    def test_status(self, partner_interview_id: str) -> httpx.Response:
        return httpx.get(
            f"{self.partner_url}/test_status",
            params={"partner_interview_id": partner_interview_id},
            headers=self.auth(),
            timeout=30,
        )

    def patches(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.method == "PATCH"]

    def _poll_status(self, path: str) -> None:
        with self._lock:
            interview = self.interviews.get(path)
        if interview is None:
            return
        answer = self.test_status(interview)
        with self._lock:
            self.statuses.append({"status_code": answer.status_code, **answer.json()})
