"""Authentication policies and high assurance, end to end: policies created through the
Globus Auth policy API of gc-service with the unmodified globus-sdk, an unmodified upstream
endpoint registered with ``authentication_policy`` in its ``config.yaml``, and SDK users whose
identities are in different domains. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid

import globus_sdk
import pika
import pytest
import requests
from .conftest import BASE, UpstreamEndpoint, get_token, wait_for
from globus_compute_sdk import Client, Executor

pytestmark = pytest.mark.timeout(300)

_FUNCS = {"__name__": "__main__"}
exec("def double(x):\n    return 2 * x\n", _FUNCS)
double = _FUNCS["double"]

MANAGE_PROJECTS = "urn:globus:auth:scope:auth.globus.org:manage_projects"


def _app(client: dict) -> globus_sdk.ClientApp:
    return globus_sdk.ClientApp(
        app_name=f"gcrs-test-{uuid.uuid4().hex[:6]}",
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        config=globus_sdk.GlobusAppConfig(token_storage="memory"),
    )


def _auth_client(client: dict) -> globus_sdk.AuthClient:
    app = _app(client)
    app.add_scope_requirements({"auth.globus.org": [MANAGE_PROJECTS]})
    return globus_sdk.AuthClient(app=app)


def _user(site, name: str, username: str) -> dict:
    c = site.service.create_client(name)
    site.service.admin("identity", "add", "--client", c["client_id"], "--username", username)
    return c


def _policy_denials(site, client: dict) -> list[str]:
    return [
        line
        for line in site.service.log.read_text().splitlines()
        if "authentication policy not satisfied" in line and client["client_id"] in line
    ]


@pytest.fixture(scope="module")
def policy_site(site):
    """The site plus: a domain policy (created by the site's client), two users
    (alice@hpc.uni.edu satisfies it, mallory@evil.org does not) and a public upstream endpoint
    of alice's registered with the policy."""
    ac = _auth_client(site.client)
    policy = ac.create_policy(
        project_id=str(uuid.uuid4()),
        display_name="University only",
        description="Only identities of uni.edu and its subdomains",
        domain_constraints_include=["uni.edu", "*.uni.edu"],
    )["policy"]
    site.alice = _user(site, "alice", "alice@hpc.uni.edu")
    site.mallory = _user(site, "mallory", "mallory@evil.org")
    # A non-privileged upstream endpoint starts user endpoints for its owner's identities
    # only, so alice runs it; it is public, so only the policy keeps mallory out.
    ep = UpstreamEndpoint(
        site.alice, config_extra=f"public: true\nauthentication_policy: {policy['id']}\n"
    )
    try:
        ep.start()
        site.policy = policy
        site.policy_endpoint = ep
        yield site
    finally:
        ep.cleanup()


def test_policy_api_round_trip(site):
    ac = _auth_client(site.client)
    project = str(uuid.uuid4())
    created = ac.create_policy(
        project_id=project,
        display_name="HA policy",
        description="d",
        high_assurance=True,
        authentication_assurance_timeout=1800,
        domain_constraints_exclude=["evil.org"],
    )["policy"]
    assert created["project_id"] == project
    assert created["high_assurance"] is True
    assert created["authentication_assurance_timeout"] == 1800
    assert created["domain_constraints_exclude"] == ["evil.org"]
    assert created["domain_constraints_include"] is None
    assert ac.get_policy(created["id"])["policy"] == created
    assert created["id"] in [p["id"] for p in ac.get_policies()["policies"]]

    updated = ac.update_policy(created["id"], display_name="renamed", domain_constraints_exclude=None)
    assert updated["policy"]["display_name"] == "renamed"
    assert updated["policy"]["domain_constraints_exclude"] is None

    # Another client may read the policy (to reference it) but not change or delete it.
    other = _auth_client(site.service.create_client("other-admin"))
    assert other.get_policy(created["id"])["policy"]["id"] == created["id"]
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        other.delete_policy(created["id"])
    assert info.value.http_status == 403

    # MFA only on high-assurance policies; project_id is required.
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        ac.create_policy(project_id=project, display_name="x", description="", required_mfa=True)
    assert info.value.http_status == 400
    ac.delete_policy(created["id"])
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        ac.get_policy(created["id"])
    assert info.value.http_status == 404


def test_identity_in_allowed_domain_can_submit(policy_site):
    s = policy_site
    with Executor(endpoint_id=s.policy_endpoint.endpoint_id, client=Client(app=_app(s.alice))) as ex:
        assert ex.submit(double, 21).result(timeout=120) == 42
    assert _policy_denials(s, s.alice) == []


def test_identity_in_other_domain_is_refused_with_a_clear_error(policy_site):
    s = policy_site
    c = Client(app=_app(s.mallory))
    fid = c.register_function(double)
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        c.run(1, endpoint_id=s.policy_endpoint.endpoint_id, function_id=fid)
    err = info.value
    assert err.http_status == 403
    assert err.code == "AuthorizationRequired"
    assert "allowed domains: uni.edu, *.uni.edu" in err.message
    assert err.raw_json["authorization_parameters"]["session_required_policies"] == [
        s.policy["id"]
    ]
    # The SDK treated the answer as an authentication requirement: it authenticated again
    # and retried once before giving up.
    assert len(_policy_denials(s, s.mallory)) == 2

    # The Executor surfaces the same error on the future.
    with Executor(endpoint_id=s.policy_endpoint.endpoint_id, client=c) as ex:
        fut = ex.submit(double, 1)
        with pytest.raises(globus_sdk.GlobusAPIError) as info:
            fut.result(timeout=60)
    assert info.value.http_status == 403


def test_assurance_timeout_makes_the_sdk_authenticate_again(policy_site):
    s = policy_site
    ac = _auth_client(s.client)
    ac.update_policy(s.policy["id"], authentication_assurance_timeout=2)
    try:
        c = Client(app=_app(s.alice))
        fid = c.register_function(double)  # the token is issued now
        time.sleep(3.5)
        before = len(_policy_denials(s, s.alice))
        tid = c.run(4, endpoint_id=s.policy_endpoint.endpoint_id, function_id=fid)
        denials = _policy_denials(s, s.alice)[before:]
        assert len(denials) == 1 and "Timeout" in denials[0]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and c.get_task(tid)["pending"]:
            time.sleep(0.3)
        assert c.get_result(tid) == 8
    finally:
        ac.update_policy(s.policy["id"], authentication_assurance_timeout=None)


def _register(token: str, **body):
    return requests.post(
        f"{BASE}/v3/endpoints",
        headers={"Authorization": f"Bearer {token}"},
        json={"endpoint_name": "ha-ep", "metadata": {}, "public": True, **body},
        timeout=10,
    )


def test_high_assurance_registration_rules(site):
    token = get_token(site.client)
    ac = _auth_client(site.client)
    plain = ac.create_policy(project_id=str(uuid.uuid4()), display_name="p", description="")["policy"]
    ha = ac.create_policy(
        project_id=str(uuid.uuid4()), display_name="ha", description="", high_assurance=True
    )["policy"]
    sub = str(uuid.uuid4())

    assert _register(token, high_assurance=True, authentication_policy=ha["id"]).status_code == 422
    assert _register(token, high_assurance=True, subscription_uuid=sub).status_code == 422
    r = _register(token, high_assurance=True, subscription_uuid=sub, authentication_policy=plain["id"])
    assert r.status_code == 422
    assert _register(token, authentication_policy=str(uuid.uuid4())).status_code == 422

    r = _register(token, high_assurance=True, subscription_uuid=sub, authentication_policy=ha["id"])
    assert r.status_code == 200, r.text
    eid = r.json()["endpoint_id"]
    doc = requests.get(
        f"{BASE}/v2/endpoints/{eid}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    assert (doc["high_assurance"], doc["subscription_uuid"], doc["authentication_policy"]) == (
        True,
        sub,
        ha["id"],
    )
    # High assurance cannot be switched off (or on) by a later registration.
    r = requests.put(
        f"{BASE}/v3/endpoints/{eid}",
        headers={"Authorization": f"Bearer {token}"},
        json={"endpoint_name": "ha-ep", "metadata": {}, "high_assurance": False},
        timeout=10,
    )
    assert r.status_code == 422
    # A policy in use cannot be deleted.
    with pytest.raises(globus_sdk.GlobusAPIError) as info:
        ac.delete_policy(ha["id"])
    assert info.value.http_status == 409


def test_high_assurance_results_need_a_recent_authentication(site):
    """Tasks of a high-assurance endpoint: the result queue gets a notice without data, and
    results are released over REST only to a caller whose authentication is within the
    policy's timeout. The endpoint is played by pika with the service's broker URL."""
    ac = _auth_client(site.client)
    ha = ac.create_policy(
        project_id=str(uuid.uuid4()),
        display_name="ha",
        description="",
        high_assurance=True,
        authentication_assurance_timeout=4,
    )["policy"]
    owner = get_token(site.client)
    r = _register(
        owner,
        endpoint_name="ha-results",
        high_assurance=True,
        subscription_uuid=str(uuid.uuid4()),
        authentication_policy=ha["id"],
    )
    assert r.status_code == 200, r.text
    eid = r.json()["endpoint_id"]

    user = _user(site, "ha-user", "user@uni.edu")
    token = get_token(user)
    issued = time.monotonic()
    h = {"Authorization": f"Bearer {token}"}
    fid = requests.post(
        f"{BASE}/v3/functions",
        headers=h,
        json={"function_name": "f", "function_code": "x", "serialized": True},
        timeout=10,
    ).json()["function_uuid"]
    r = requests.post(
        f"{BASE}/v3/endpoints/{eid}/submit",
        headers=h,
        json={"tasks": {fid: ["payload"]}, "create_queue": True},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    tid, tg = r.json()["tasks"][fid][0], r.json()["task_group_id"]
    assert requests.get(f"{BASE}/v2/tasks/{tid}", headers=h, timeout=10).status_code == 200

    # A function bound to the HA endpoint (ha_endpoint_id) runs there only.
    plain = _register(owner, endpoint_name="plain-public").json()["endpoint_id"]

    def register_fn(ha_endpoint_id):
        return requests.post(
            f"{BASE}/v3/functions",
            headers=h,
            json={"function_name": "g", "function_code": "y", "ha_endpoint_id": ha_endpoint_id},
            timeout=10,
        )

    assert register_fn(plain).status_code == 422
    r = register_fn(eid)
    assert r.status_code == 200, r.text
    hfid = r.json()["function_uuid"]
    r = requests.post(
        f"{BASE}/v3/endpoints/{plain}/submit",
        headers=h,
        json={"tasks": {hfid: ["p"]}, "create_queue": False},
        timeout=10,
    )
    assert r.status_code == 403 and r.json()["code"] == "FUNCTION_NOT_PERMITTED"

    # The endpoint reports a result; the SDK's result queue gets a data-less notice flagged
    # high_assurance (the SDK then fetches the outcome over REST, through the policy check).
    result = {"task_id": tid, "data": "00\nsecret-result\n", "details": None,
              "error_details": None, "task_statuses": None}
    with pika.BlockingConnection(pika.URLParameters(site.service.vhost.url)) as conn:
        ch = conn.channel()
        ch.basic_publish(
            "results",
            f"{eid}.results",
            b"\x01" + json.dumps({"message_type": "result", "data": result}).encode(),
        )

        def notice():
            method, props, body = ch.basic_get(f"gcrs_results_{tg}", auto_ack=True)
            return method and (props, body)

        props, body = wait_for(notice, 30, "the result notice")
    assert props.headers == {"high_assurance": True}
    forwarded = json.loads(body[1:])["data"]
    assert forwarded["task_id"] == tid and forwarded["data"] == ""
    assert b"secret-result" not in body
    fresh = {"Authorization": f"Bearer {get_token(user)}"}
    done = requests.get(f"{BASE}/v2/tasks/{tid}", headers=fresh, timeout=10).json()
    assert done["status"] == "success" and done["result"] == result["data"]

    time.sleep(max(0.0, 5.0 - (time.monotonic() - issued)))
    for resp in (
        requests.get(f"{BASE}/v2/tasks/{tid}", headers=h, timeout=10),
        requests.get(f"{BASE}/v2/functions/{hfid}", headers=h, timeout=10),
        requests.post(f"{BASE}/v2/batch_status", headers=h, json={"task_ids": [tid]}, timeout=10),
        requests.post(
            f"{BASE}/v3/endpoints/{eid}/submit",
            headers=h,
            json={"tasks": {fid: ["p"]}, "create_queue": False},
            timeout=10,
        ),
    ):
        assert resp.status_code == 403
        body = resp.json()
        assert body["code"] == "AuthorizationRequired"
        assert body["authorization_parameters"]["session_required_policies"] == [ha["id"]]
    fresh = {"Authorization": f"Bearer {get_token(user)}"}
    assert requests.get(f"{BASE}/v2/tasks/{tid}", headers=fresh, timeout=10).status_code == 200
    assert requests.get(f"{BASE}/v2/functions/{hfid}", headers=fresh, timeout=10).status_code == 200
    assert requests.post(
        f"{BASE}/v2/batch_status", headers=fresh, json={"task_ids": [tid]}, timeout=10
    ).json()["results"][tid]["status"] == "success"
