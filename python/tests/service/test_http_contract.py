"""HTTP-level behaviour of gc-service that the SDK only shows indirectly: error shapes,
authentication, ownership, limits, the multi-user start flow's failure path, and result
de-duplication. Runs on SQLite and PostgreSQL like the SDK tests."""

import json
import time
import uuid

import globus_sdk
import pika
import pytest
import requests
from .conftest import BASE, COMPUTE_SCOPE, get_token, wait_for
from globus_compute_sdk import Client

pytestmark = pytest.mark.timeout(300)


def _h(token):
    return {"Authorization": f"Bearer {token}"}


def _assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["message"], str) and body["message"]
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def other(site):
    """A second, unrelated client of the same service."""
    client = site.service.create_client("other")
    return client


def _register(token, code="10\n01\nabcdef\n"):
    r = requests.post(
        f"{BASE}/v3/functions",
        headers=_h(token),
        json={"function_name": "f", "function_code": code, "serialized": True, "meta": {}},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["function_uuid"]


def test_auth_errors(site):
    r = requests.get(f"{BASE}/v2/endpoints", timeout=10)
    _assert_error(r, 401)
    r = requests.get(f"{BASE}/v2/endpoints", headers=_h("not-a-token"), timeout=10)
    _assert_error(r, 401)
    r = requests.post(
        f"{BASE}/auth/v2/oauth2/token",
        auth=(site.client["client_id"], "wrong"),
        data={"grant_type": "client_credentials", "scope": COMPUTE_SCOPE},
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_token_response_and_userinfo(site):
    r = requests.post(
        f"{BASE}/auth/v2/oauth2/token",
        auth=(site.client["client_id"], site.client["client_secret"]),
        data={"grant_type": "client_credentials", "scope": f"{COMPUTE_SCOPE} {COMPUTE_SCOPE} openid"},
        timeout=10,
    )
    body = r.json()
    assert body["resource_server"] == "funcx_service"
    assert [t["resource_server"] for t in body["other_tokens"]] == ["auth.globus.org"]
    auth_tok = body["other_tokens"][0]["access_token"]
    info = requests.get(f"{BASE}/auth/v2/oauth2/userinfo", headers=_h(auth_tok), timeout=10).json()
    assert info["sub"] in {i["sub"] for i in info["identity_set"]}
    # Revoked tokens stop working.
    r = requests.post(
        f"{BASE}/auth/v2/oauth2/token/revoke",
        auth=(site.client["client_id"], site.client["client_secret"]),
        data={"token": auth_tok},
        timeout=10,
    )
    assert r.json() == {"active": False}
    _assert_error(requests.get(f"{BASE}/auth/v2/oauth2/userinfo", headers=_h(auth_tok), timeout=10), 401)


def test_identities_added_by_admin_are_the_identity_set(site, other):
    ident = site.service.admin(
        "identity", "add", "--client", other["client_id"], "--username", "alice@uni.example.edu",
        "--email", "alice@uni.example.edu", "--name", "Alice", "--provider", "University Example",
    ).strip()
    linked = site.service.admin(
        "identity", "add", "--client", other["client_id"], "--username", "alice@globusid.org",
        "--provider", "Globus ID",
    ).strip()
    tok = requests.post(
        f"{BASE}/auth/v2/oauth2/token",
        auth=(other["client_id"], other["client_secret"]),
        data={"grant_type": "client_credentials", "scope": "openid"},
        timeout=10,
    ).json()["access_token"]
    info = requests.get(f"{BASE}/auth/v2/oauth2/userinfo", headers=_h(tok), timeout=10).json()
    assert info["sub"] == ident
    assert info["preferred_username"] == "alice@uni.example.edu"
    assert info["identity_provider_display_name"] == "University Example"
    assert {i["sub"] for i in info["identity_set"]} >= {ident, linked}
    found = requests.get(
        f"{BASE}/auth/v2/api/identities", params={"ids": linked}, headers=_h(tok), timeout=10
    ).json()["identities"]
    assert [i["username"] for i in found] == ["alice@globusid.org"]


def test_bad_input_gets_json_errors(site):
    tok = get_token(site.client)
    url = f"{BASE}/v3/endpoints/{site.endpoint_id}/submit"
    r = requests.post(url, headers={**_h(tok), "content-type": "application/json"}, data="{not json", timeout=10)
    _assert_error(r, 400)
    _assert_error(requests.post(url, headers=_h(tok), json={"tasks": 5}, timeout=10), 422)
    r = requests.post(url, headers=_h(tok), json={"tasks": {"not-a-uuid": ["x"]}}, timeout=10)
    _assert_error(r, 422, "SEMANTICALLY_INVALID")
    r = requests.post(f"{BASE}/v3/endpoints/nope/submit", headers=_h(tok), json={"tasks": {}}, timeout=10)
    _assert_error(r, 400)
    _assert_error(requests.get(f"{BASE}/v2/tasks/garbage", headers=_h(tok), timeout=10), 400)
    _assert_error(requests.get(f"{BASE}/v2/tasks/{uuid.uuid4()}", headers=_h(tok), timeout=10), 404)
    r = requests.post(
        f"{BASE}/v3/endpoints/{uuid.uuid4()}/submit", headers=_h(tok), json={"tasks": {}}, timeout=10
    )
    _assert_error(r, 404, "ENDPOINT_NOT_FOUND")
    r = requests.post(
        f"{BASE}/v3/endpoints/{site.endpoint_id}/submit",
        headers=_h(tok),
        json={"tasks": {str(uuid.uuid4()): ["x"]}},
        timeout=10,
    )
    _assert_error(r, 404, "FUNCTION_NOT_FOUND")
    _assert_error(requests.get(f"{BASE}/no/such/route", timeout=10), 404)


def test_task_payload_over_10mb_is_413(site):
    tok = get_token(site.client)
    fid = _register(tok)
    r = requests.post(
        f"{BASE}/v3/endpoints/{site.endpoint_id}/submit",
        headers=_h(tok),
        json={"tasks": {fid: ["x" * (10 * 1024 * 1024 + 1)]}},
        timeout=60,
    )
    _assert_error(r, 413, "PAYLOAD_TOO_LARGE")


def test_other_clients_objects_are_hidden(site, other):
    mine = Client()
    fid = mine.register_function(lambda: 1)
    tid = mine.run(endpoint_id=site.endpoint_id, function_id=fid)
    tok = get_token(other)
    _assert_error(requests.get(f"{BASE}/v2/tasks/{tid}", headers=_h(tok), timeout=10), 404)
    _assert_error(requests.get(f"{BASE}/v2/functions/{fid}", headers=_h(tok), timeout=10), 404)
    r = requests.post(f"{BASE}/v2/batch_status", headers=_h(tok), json={"task_ids": [tid]}, timeout=10)
    assert r.json()["results"] == {}
    # The endpoint is a personal (single-owner) endpoint: others may not submit or manage it.
    other_fid = _register(tok)
    r = requests.post(
        f"{BASE}/v3/endpoints/{site.endpoint_id}/submit",
        headers=_h(tok),
        json={"tasks": {other_fid: ["x"]}},
        timeout=10,
    )
    _assert_error(r, 403)
    _assert_error(requests.delete(f"{BASE}/v2/endpoints/{site.endpoint_id}", headers=_h(tok), timeout=10), 403)
    r = requests.put(
        f"{BASE}/v3/endpoints/{site.endpoint_id}", headers=_h(tok), json={"endpoint_name": "steal"}, timeout=10
    )
    _assert_error(r, 409)
    # A task group in use by one client cannot be borrowed by another.
    tg = requests.get(f"{BASE}/v2/tasks/{tid}", headers=_h(get_token(site.client)), timeout=10)
    assert tg.status_code == 200


def test_allowed_functions_gives_403(site):
    tok = get_token(site.client)
    allowed = _register(tok)
    r = requests.post(
        f"{BASE}/v3/endpoints",
        headers=_h(tok),
        json={"endpoint_name": "restricted", "metadata": {}, "allowed_functions": [allowed]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    reg = r.json()
    eid = reg["endpoint_id"]
    assert reg["command_queue_info"]["queue"] == f"{eid}.commands"
    assert reg["heartbeat_queue_info"]["queue_publish_kwargs"]["routing_key"] == f"{eid}.heartbeats"
    af = requests.get(f"{BASE}/v3/endpoints/{eid}/allowed_functions", headers=_h(tok), timeout=10).json()
    assert af == {"endpoint_id": eid, "restricted": True, "functions": [allowed]}
    denied = _register(tok)
    r = requests.post(
        f"{BASE}/v3/endpoints/{eid}/submit", headers=_h(tok), json={"tasks": {denied: ["x"]}}, timeout=10
    )
    body = _assert_error(r, 403, "FUNCTION_NOT_PERMITTED")
    assert body["message"] == f"Function {denied} not permitted on endpoint {eid}"
    status = requests.get(f"{BASE}/v2/endpoints/{eid}/status", headers=_h(tok), timeout=10).json()
    assert status["status"] == "offline"


def test_user_endpoint_start_failure_reaches_the_sdk(site):
    """A reserved user-config key makes the upstream MEP refuse to render the user endpoint's
    config; its failure notice becomes the SDK's 422."""
    c = Client()
    fid = c.register_function(lambda: 1)
    batch = c.create_batch(user_endpoint_config={"_GC": "reserved"})
    batch.add(fid)
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        c.batch_run(site.endpoint_id, batch)
    assert info.value.http_status == 422
    assert info.value.code == "SEMANTICALLY_INVALID"
    assert "reserved" in info.value.message


def test_duplicate_results_are_recorded_and_forwarded_once(site):
    tok = get_token(site.client)
    fid = _register(tok)
    # Submitted to the restricted-free test endpoint but never run: the task carries a bogus
    # function buffer, so the endpoint's own (error) result races ours; either way exactly one
    # outcome must be kept and exactly one message forwarded.
    r = requests.post(
        f"{BASE}/v3/endpoints/{site.endpoint_id}/submit",
        headers=_h(tok),
        json={"tasks": {fid: ["payload"]}, "create_queue": True},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    sub = r.json()
    tid = sub["tasks"][fid][0]
    tg = sub["task_group_id"]
    info = requests.get(f"{BASE}/v2/get_amqp_result_connection_url", headers=_h(tok), timeout=10).json()
    params = pika.URLParameters(info["connection_url"])
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    body = b"\x01" + json.dumps(
        {"message_type": "result", "data": {"task_id": tid, "data": "11\n1", "details": None,
                                            "error_details": None, "task_statuses": None}}
    ).encode()
    for _ in range(3):
        ch.basic_publish("results", "00000000-0000-4000-8000-000000000000.results", body)
    final = wait_for(
        lambda: (t := requests.get(f"{BASE}/v2/tasks/{tid}", headers=_h(tok), timeout=10).json())
        .get("completion_t") and t,
        60,
        "the task to complete",
    )
    time.sleep(2)  # give duplicates time to be (not) forwarded
    queue = info["queue_prefix"] + tg
    messages = []
    while True:
        method, _props, msg = ch.basic_get(queue, auto_ack=True)
        if method is None:
            break
        messages.append(msg)
    conn.close()
    assert len(messages) == 1
    assert json.loads(messages[0][1:])["data"]["task_id"] == tid
    again = requests.get(f"{BASE}/v2/tasks/{tid}", headers=_h(tok), timeout=10).json()
    assert again == final
