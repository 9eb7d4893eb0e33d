"""Rate limits per token (resolvers.ratelimit): the buckets, the API's refusals, Redis.

The session's test app keeps its generous defaults; tests here swap in a tightly
configured limiter for their own duration (``tight``) or start child servers with
tight limits, so no other test is ever refused.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import asyncio as aioredis
from starlette.applications import Starlette

from gql.settings import Settings, SettingsError
from resolvers import metrics
from resolvers.auth import Principal, PrincipalKind
from resolvers.errors import RateLimited
from resolvers.ratelimit import (
    EXEMPT,
    LIMITED,
    PROCESS,
    WRITE,
    Buckets,
    MemoryBuckets,
    Rate,
    RateLimiter,
    RedisBuckets,
)
from tests.conftest import REDIS_URL, Account
from tests.redis_server import RedisServer
from tests.server import ServerProcess, free_port, start_server
from tests.support import Api

NOTE = 'mutation($id: ID!) { addNote(sessionId: $id, text: "n") { seq } }'
RUN_TESTS = "mutation($id: ID!) { runTests(sessionId: $id) { id } }"


def refusals(limit: str) -> float:
    value = metrics.REGISTRY.get_sample_value("interviewlm_rate_limited_total", {"limit": limit})
    return value or 0.0


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never came"
        await asyncio.sleep(0.02)


def principal(kind: PrincipalKind = PrincipalKind.CANDIDATE) -> Principal:
    return Principal(kind=kind, account_id=uuid.uuid4(), token_id=uuid.uuid4())


# -- configuration ---------------------------------------------------------------


def test_rates_parse() -> None:
    assert Rate.parse("300/60s") == Rate(burst=300, per_s=5.0)
    assert Rate.parse("10/1m") == Rate(burst=10, per_s=10 / 60)
    assert Rate.parse("7/h") == Rate(burst=7, per_s=7 / 3600)
    assert Rate.parse(" 4 / 2 ") == Rate(burst=4, per_s=2.0)
    assert Rate.parse("off") is None
    for bad in ("", "fast", "0/60s", "5/0s", "-1/60s", "5/60d"):
        with pytest.raises(ValueError, match="got"):
            Rate.parse(bad)
    settings = Settings.from_env({"RATE_LIMIT_PROCESS": "2/10s", "RATE_LIMIT_WEBHOOK": "off"})
    assert settings.rate_limit_process == Rate(burst=2, per_s=0.2)
    assert settings.rate_limit_webhook is None
    assert settings.rate_limit_write == Settings().rate_limit_write
    with pytest.raises(SettingsError, match="RATE_LIMIT_WRITE"):
        Settings.from_env({"RATE_LIMIT_WRITE": "lots"})


async def test_every_mutation_is_classified(api: Api, account: Account) -> None:
    """A new mutation must be put in a class or exempted on purpose (with its reason)."""
    query = "{ __schema { mutationType { fields { name } } } }"
    schema = (await api(query, token=account["interviewerToken"])).ok()["__schema"]
    names = {f["name"] for f in schema["mutationType"]["fields"]}
    assert not set(LIMITED) & EXEMPT
    assert names == set(LIMITED) | EXEMPT


# -- the buckets, in memory and in Redis -------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def buckets(request: pytest.FixtureRequest) -> AsyncIterator[Buckets]:
    store: Buckets = MemoryBuckets() if request.param == "memory" else RedisBuckets(REDIS_URL)
    yield store
    await store.aclose()


async def test_bucket_refuses_past_burst_then_refills(buckets: Buckets) -> None:
    key, rate = f"t:{uuid.uuid4()}", Rate(burst=3, per_s=10.0)
    assert [await buckets.take(key, rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await buckets.take(key, rate)
    assert 0.05 < wait <= 0.1  # one token comes back every 0.1 s
    assert await buckets.take(f"t:{uuid.uuid4()}", rate) == 0.0  # another key: its own
    await asyncio.sleep(0.15)
    assert await buckets.take(key, rate) == 0.0
    assert await buckets.take(key, rate) > 0


async def test_memory_buckets_forget_full_ones() -> None:
    store = MemoryBuckets()
    rate = Rate(burst=1, per_s=1000.0)  # full again after 1 ms
    for n in range(MemoryBuckets.PRUNE_EVERY - 1):
        await store.take(f"k{n}", rate)
    await asyncio.sleep(0.01)
    await store.take("last", rate)  # the PRUNE_EVERY-th take prunes
    assert len(store) <= 1


@pytest.mark.redis
async def test_redis_bucket_keys_expire_when_full_again() -> None:
    store = RedisBuckets(REDIS_URL)
    probe = aioredis.Redis.from_url(REDIS_URL)
    key, rate = f"t:{uuid.uuid4()}", Rate(burst=4, per_s=2.0)
    try:
        await store.take(key, rate)
        ttl_ms = await probe.pttl(RedisBuckets.PREFIX + key)
        assert 0 < ttl_ms <= 1500  # one token to refill: 0.5 s, plus a second's margin
        for _ in range(3):
            await store.take(key, rate)
        assert 2000 < await probe.pttl(RedisBuckets.PREFIX + key) <= 3000
    finally:
        await probe.delete(RedisBuckets.PREFIX + key)
        await probe.aclose()
        await store.aclose()


@pytest.mark.redis
async def test_redis_buckets_are_shared_and_atomic_across_clients() -> None:
    """Two replicas' clients racing on one bucket: exactly ``burst`` takes succeed."""
    # Long timeouts: a check that timed out would be allowed (fail open), not raced.
    replicas = [RedisBuckets(REDIS_URL, timeout_s=10), RedisBuckets(REDIS_URL, timeout_s=10)]
    key, rate = f"t:{uuid.uuid4()}", Rate(burst=20, per_s=0.01)
    try:
        waits = await asyncio.gather(*(replicas[n % 2].take(key, rate) for n in range(60)))
        assert [store.failures for store in replicas] == [0, 0]
        assert sum(1 for w in waits if w == 0) == 20
    finally:
        for store in replicas:
            await store.aclose()


async def test_unreachable_redis_fails_open_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RedisBuckets(f"redis://127.0.0.1:{free_port()}/0")
    limiter = RateLimiter({PROCESS: Rate(burst=1, per_s=0.01)}, store)
    who = principal()
    try:
        with caplog.at_level(logging.WARNING, logger="interviewlm.ratelimit"):
            for _ in range(5):
                await limiter.check(who, "runTests")
        warnings = [r for r in caplog.records if r.name == "interviewlm.ratelimit"]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()
    finally:
        await limiter.aclose()


@pytest.mark.redis
async def test_redis_outage_fails_open_and_limits_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    store = RedisBuckets(redis.url)
    store.RETRY_AFTER_OUTAGE_S = 0.05
    limiter = RateLimiter({PROCESS: Rate(burst=1, per_s=0.01)}, store)
    who = principal()
    try:
        await limiter.check(who, "runTests")
        with pytest.raises(RateLimited):
            await limiter.check(who, "runTests")
        redis.stop()
        with caplog.at_level(logging.WARNING, logger="interviewlm.ratelimit"):
            for _ in range(3):
                await limiter.check(who, "runTests")  # allowed: fails open
                await asyncio.sleep(0.06)
            redis.start()  # empty: the bucket starts full again

            async def limited_again() -> bool:
                try:
                    await limiter.check(who, "runTests")
                except RateLimited:
                    return True
                return False

            await until(limited_again, 10)
        assert "rate limits available again" in caplog.text
    finally:
        redis.stop()
        await limiter.aclose()


# -- through the API ----------------------------------------------------------------


@pytest.fixture
def tight(app: Starlette) -> Iterator[Callable[[RateLimiter], None]]:
    """Swap the test app's limiter for this test only (the suite keeps the defaults)."""
    services = app.state.services
    original = services.limits

    def use(limiter: RateLimiter) -> None:
        services.limits = limiter

    yield use
    services.limits = original


async def test_api_refuses_past_burst_with_retry_after_then_refills(
    api: Api, account: Account, tight: Callable[[RateLimiter], None]
) -> None:
    tight(RateLimiter({WRITE: Rate(burst=2, per_s=4.0)}, MemoryBuckets()))
    staff, variables = account["interviewerToken"], {"id": account["sessionId"]}
    before = refusals(WRITE)
    for _ in range(2):
        (await api(NOTE, variables, token=staff)).ok()
    third = await api(NOTE, variables, token=staff)
    assert third.codes == ["RATE_LIMITED"]
    assert third.errors[0]["extensions"]["retryAfterSeconds"] == 1
    assert third.errors[0]["extensions"]["limit"] == WRITE
    assert refusals(WRITE) == before + 1
    # Another token, even of the same account, has buckets of its own.
    (await api(NOTE, variables, token=account["atsToken"])).ok()
    # Refilled at 4 tokens a second.
    await until(lambda: _allowed(api, NOTE, variables, staff), 5)
    # Aliases do not get around it: each aliased field takes a token.
    tight(RateLimiter({WRITE: Rate(burst=2, per_s=0.01)}, MemoryBuckets()))
    aliased = await api(
        'mutation($id: ID!) { a: addNote(sessionId: $id, text: "a") { seq }'
        ' b: addNote(sessionId: $id, text: "b") { seq }'
        ' c: addNote(sessionId: $id, text: "c") { seq } }',
        variables,
        token=account["atsToken"],
    )
    assert aliased.codes == ["RATE_LIMITED"]
    assert aliased.errors[0]["path"] == ["c"]


async def _allowed(api: Api, query: str, variables: dict[str, str], token: str) -> bool:
    return "RATE_LIMITED" not in (await api(query, variables, token=token)).codes


async def test_candidate_hammering_run_tests_drains_only_its_own_bucket(
    api: Api, account: Account, tight: Callable[[RateLimiter], None]
) -> None:
    tight(RateLimiter({PROCESS: Rate(burst=3, per_s=0.01)}, MemoryBuckets()))
    variables = {"id": account["sessionId"]}
    answers = await asyncio.gather(
        *(api(RUN_TESTS, variables, token=account["candidateToken"]) for _ in range(10))
    )
    assert sum(a.codes == ["RATE_LIMITED"] for a in answers) == 7
    # Its interviewer is not slowed down by the candidate's flood.
    staff = await api(RUN_TESTS, variables, token=account["interviewerToken"])
    assert "RATE_LIMITED" not in staff.codes
    # Stopping is never limited.
    terminate = "mutation($id: ID!) { terminateSandbox(sessionId: $id) { id } }"
    for _ in range(5):
        stop = await api(terminate, variables, token=account["candidateToken"])
        assert "RATE_LIMITED" not in stop.codes


async def test_api_fails_open_when_redis_is_unreachable(
    api: Api, account: Account, tight: Callable[[RateLimiter], None]
) -> None:
    dead = RedisBuckets(f"redis://127.0.0.1:{free_port()}/0")
    tight(RateLimiter({WRITE: Rate(burst=1, per_s=0.01)}, dead))
    try:
        for _ in range(4):
            answer = await api(NOTE, {"id": account["sessionId"]}, token=account["atsToken"])
            assert answer.status == 200, answer.body
            assert answer.codes == [], answer.body
    finally:
        await dead.aclose()


@pytest.fixture
def limited_replicas(
    server_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = {**server_env, "REDIS_URL": REDIS_URL, "RATE_LIMIT_WRITE": "3/60s"}
    first = start_server(env, tmp_path)
    try:
        second = start_server(env, tmp_path)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.mark.redis
async def test_replicas_share_the_buckets_through_redis(
    limited_replicas: tuple[ServerProcess, ServerProcess], account: Account
) -> None:
    async def note(server: ServerProcess, token: str) -> list[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            api = Api(http)
            return (await api(NOTE, {"id": account["sessionId"]}, token=token)).codes

    first, second = limited_replicas
    staff = account["interviewerToken"]
    codes = [await note(server, staff) for server in (first, second, first, second)]
    assert codes == [[], [], [], ["RATE_LIMITED"]], first.log() + second.log()
    assert await note(first, account["atsToken"]) == []


async def test_greenhouse_send_test_spends_the_create_session_bucket(
    client: httpx.AsyncClient, account: Account, tight: Callable[[RateLimiter], None]
) -> None:
    """Greenhouse's send_test creates sessions outside GraphQL: same bucket, refused with
    the API's 429 and a Retry-After header."""
    from tests.test_greenhouse import send_body, send_test

    tight(RateLimiter({WRITE: Rate(burst=1, per_s=0.01)}, MemoryBuckets()))
    key, test_id = account["atsToken"], account["questionId"]
    assert (await send_test(client, key, send_body(test_id, application_id=7001))).is_success
    refused = await send_test(client, key, send_body(test_id, application_id=7002))
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert "too many" in refused.json()["errors"][0]["message"]
