"""Webhooks under attack: SSRF (where a delivery may go) and who may manage endpoints.

The receiver is a loopback stand-in (tests/webhook_receiver.py). Where a test needs
private targets refused, it gives the shared app's worker the production policy
(``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` unset) and puts the test policy back afterwards.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from starlette.applications import Starlette

from resolvers.webhooks.endpoints import remove_endpoints
from resolvers.webhooks.ssrf import is_public
from resolvers.webhooks.worker import DeliveryWorker
from tests.conftest import Account
from tests.support import Api, wait_until
from tests.test_webhooks import (
    CREATE_ENDPOINT,
    DELETE_ENDPOINT,
    DELIVERIES,
    ENDPOINTS,
    FAST,
    REDELIVER,
    SEND_TEST,
    UPDATE_ENDPOINT,
    create_endpoint,
    deliveries,
    fast_worker,
    receiver,
    verified,
)
from tests.webhook_receiver import Receiver, Reply, running_receiver

__all__ = ["fast_worker", "receiver"]  # fixtures, used by name


@pytest.fixture
def production_policy(app: Starlette) -> Iterator[DeliveryWorker]:
    worker: DeliveryWorker = app.state.webhooks
    saved = worker.config
    worker.config = dataclasses.replace(FAST, allow_private_networks=False)
    yield worker
    worker.config = saved


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "https"),
        ("ftp://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "not a public address"),
        ("https://10.1.2.3/hook", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[::1]/hook", "not a public address"),
        ("https://[::ffff:127.0.0.1]/hook", "not a public address"),
        ("https://0.0.0.0/hook", "not a public address"),
        ("https://localhost/hook", "non-public address"),  # a name resolving to 127.0.0.1
        ("https://user:pw@example.com/hook", "credentials"),
        ("https:///hook", "host"),
        ("not a url", "https"),
    ],
)
async def test_private_and_non_https_targets_are_refused(
    api: Api, account: Account, production_policy: DeliveryWorker, url: str, why: str
) -> None:
    result = await api(
        CREATE_ENDPOINT,
        {"i": {"url": url, "events": ["session.created"]}},
        token=account["interviewerToken"],
    )
    assert result.codes == ["BAD_USER_INPUT"], result.body
    assert result.errors[0]["extensions"]["field"] == "input.url"
    assert why in result.errors[0]["message"]


def test_only_global_unicast_addresses_are_public() -> None:
    refused = [
        "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1",
        "fc00::1", "::ffff:10.0.0.1", "::", "192.0.2.1",
    ]  # fmt: skip
    assert not [a for a in refused if is_public(ipaddress.ip_address(a))]
    assert all(is_public(ipaddress.ip_address(a)) for a in ["93.184.216.34", "2606:4700::1"])


async def test_the_address_is_checked_again_at_delivery(
    api: Api, account: Account, app: Starlette, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    """An endpoint saved while private targets were allowed (or whose name now resolves
    somewhere private: DNS rebinding) gets nothing once they are not."""
    token = account["interviewerToken"]
    endpoint_id, _ = await create_endpoint(api, token, receiver.url, ["session.created"])
    fast_worker.config = dataclasses.replace(FAST, allow_private_networks=False)
    await api(SEND_TEST, {"e": endpoint_id}, token=token)
    log = await wait_until(lambda: _first_error(api, token, endpoint_id), what="a refused attempt")
    assert log.startswith("refused: ")
    assert receiver.received == []


async def _first_error(api: Api, token: str, endpoint_id: str) -> str | None:
    log = await deliveries(api, token, endpoint_id)
    return log[0]["error"] if log and log[0]["error"] else None


async def test_redirects_are_not_followed(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["interviewerToken"]
    inside = receiver.url.replace("/hook", "/internal")
    receiver.replies = [Reply(302, location=inside)] * 4
    endpoint_id, _ = await create_endpoint(api, token, receiver.url, ["session.created"])
    await api(SEND_TEST, {"e": endpoint_id}, token=token)
    error = await wait_until(lambda: _first_error(api, token, endpoint_id), what="a 302")
    assert "not followed" in error
    log = await deliveries(api, token, endpoint_id)
    assert log[0]["httpStatus"] == 302
    assert log[0]["status"] != "SUCCEEDED"
    assert receiver.at("/internal") == []


async def test_candidates_cannot_touch_webhooks(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    staff = account["interviewerToken"]
    endpoint_id, _ = await create_endpoint(api, staff, receiver.url, ["session.created"])
    await api(SEND_TEST, {"e": endpoint_id}, token=staff)
    log = await wait_until(lambda: deliveries(api, staff, endpoint_id), what="a delivery")
    candidate = account["candidateToken"]
    for query, variables in _every_operation(receiver.url, endpoint_id, log[0]["id"]):
        result = await api(query, variables, token=candidate)
        assert result.codes == ["FORBIDDEN"], (query, result.body)


async def test_other_accounts_see_nothing(
    api: Api,
    account: Account,
    account_factory: object,
    fast_worker: DeliveryWorker,
    receiver: Receiver,
) -> None:
    endpoint_id, _ = await create_endpoint(
        api, account["interviewerToken"], receiver.url, ["session.created"]
    )
    await api(SEND_TEST, {"e": endpoint_id}, token=account["interviewerToken"])
    log = await wait_until(
        lambda: deliveries(api, account["interviewerToken"], endpoint_id), what="a delivery"
    )
    other = await account_factory()  # type: ignore[operator]
    for token in (other["interviewerToken"], other["atsToken"]):
        listed = await api(ENDPOINTS, token=token)
        assert listed.ok()["webhookEndpoints"] == []
        for query, variables in _every_operation(receiver.url, endpoint_id, log[0]["id"])[1:]:
            result = await api(query, variables, token=token)
            assert result.codes == ["NOT_FOUND"], (query, result.body)
    mine = await api(ENDPOINTS, token=account["atsToken"])
    assert [e["id"] for e in mine.ok()["webhookEndpoints"]] == [endpoint_id]


def _every_operation(
    url: str, endpoint_id: str, delivery_id: str
) -> list[tuple[str, dict[str, object]]]:
    """Every webhook operation; the first is the only one that names no existing object."""
    return [
        (CREATE_ENDPOINT, {"i": {"url": url, "events": ["session.created"]}}),
        (UPDATE_ENDPOINT, {"id": endpoint_id, "i": {"description": "mine now"}}),
        (DELIVERIES, {"e": endpoint_id}),
        (SEND_TEST, {"e": endpoint_id}),
        (REDELIVER, {"d": delivery_id}),
        (DELETE_ENDPOINT, {"id": endpoint_id}),
    ]


async def test_invalid_input_names_the_field(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["interviewerToken"]
    cases = [
        ({"url": receiver.url, "events": []}, "input.events"),
        ({"url": receiver.url, "events": ["session.exploded"]}, "input.events"),
        ({"url": receiver.url, "events": ["webhook.test"]}, "input.events"),
        ({"url": receiver.url, "events": ["session.created"], "description": "x" * 501},
         "input.description"),
        ({"url": "https://example.com/" + "a" * 2100, "events": ["session.created"]},
         "input.url"),
    ]  # fmt: skip
    for given, field in cases:
        result = await api(CREATE_ENDPOINT, {"i": given}, token=token)
        assert result.codes == ["BAD_USER_INPUT"], given
        assert result.errors[0]["extensions"]["field"] == field
    endpoint_id, _ = await create_endpoint(api, token, receiver.url, ["session.created"])
    bad_update = await api(
        UPDATE_ENDPOINT, {"id": endpoint_id, "i": {"events": ["nope"]}}, token=token
    )
    assert bad_update.codes == ["BAD_USER_INPUT"]
    for query, variables in [
        (SEND_TEST, {"e": "not-an-id"}),
        (REDELIVER, {"d": "not-an-id"}),
    ]:
        assert (await api(query, variables, token=token)).codes == ["BAD_USER_INPUT"]
    deleted = await api(DELETE_ENDPOINT, {"id": endpoint_id}, token=token)
    assert deleted.ok()["deleteWebhookEndpoint"] == endpoint_id
    assert (await api(SEND_TEST, {"e": endpoint_id}, token=token)).codes == ["NOT_FOUND"]


async def test_the_secret_is_shown_once(
    api: Api, account: Account, fast_worker: DeliveryWorker, receiver: Receiver
) -> None:
    token = account["interviewerToken"]
    _, secret = await create_endpoint(api, token, receiver.url, ["session.created"])
    listed = await api("{ webhookEndpoints { secret } }", token=token)
    assert listed.codes == ["GRAPHQL_VALIDATION_FAILED"] or listed.errors
    full = await api(ENDPOINTS, token=token)
    assert secret not in str(full.body)


async def test_https_goes_to_the_checked_address_under_the_name_s_certificate(
    api: Api, account: Account, fast_worker: DeliveryWorker, tmp_path: Path
) -> None:
    """The attempt connects to the resolved address, yet TLS (SNI and the certificate
    check) and ``Host`` use the endpoint's name: a certificate for another name fails."""
    ca = trustme.CA()
    trusted = fast_worker.tls
    fast_worker.tls = ssl.create_default_context()
    ca.configure_trust(fast_worker.tls)
    token = account["interviewerToken"]
    try:
        for name, delivered in (("localhost", True), ("elsewhere.example", False)):
            chain, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
            leaf = ca.issue_cert(name)
            leaf.cert_chain_pems[0].write_to_path(chain)
            leaf.private_key_pem.write_to_path(key)
            async with running_receiver(tls=(chain, key)) as server:
                url = f"https://localhost:{server.port}/hook"
                endpoint_id, secret = await create_endpoint(api, token, url, ["session.created"])
                await api(SEND_TEST, {"e": endpoint_id}, token=token)
                log = await wait_until(
                    lambda eid=endpoint_id: _with_outcome(api, token, eid), what="an attempt"
                )
                await remove_endpoints([uuid.UUID(endpoint_id)])
            if delivered:
                assert log["status"] == "SUCCEEDED"
                assert server.received[0].headers["host"] == f"localhost:{server.port}"
                assert verified(secret, server.received[0])["type"] == "webhook.test"
            else:
                assert log["status"] == "PENDING"
                assert "certificate" in log["error"].lower()
                assert server.received == []
    finally:
        fast_worker.tls = trusted


async def _with_outcome(api: Api, token: str, endpoint_id: str) -> dict[str, Any] | None:
    log = await deliveries(api, token, endpoint_id)
    return log[0] if log and (log[0]["status"] == "SUCCEEDED" or log[0]["error"]) else None
