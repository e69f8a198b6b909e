"""The HTTPS Azure fake, exercised through the real Azure SDK clients (and raw HTTP for shapes)."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpResponse
from azure.identity import DefaultAzureCredential
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import (
    NetworkSecurityGroup,
    NetworkSecurityGroupPropertiesFormat,
    SecurityRule,
    SecurityRulePropertiesFormat,
)
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions, QueryResponse

from shared.sample.estate import (
    ESTATE_JSON_PATH,
    NIC_TYPE,
    NSG_TYPE,
    RESOURCE_GROUP_TYPE,
    SUBSCRIPTION_TYPE,
    VM_TYPE,
)
from tests.fakes.azure import FakeAzure

Row = dict[str, Any]
NIC_QUERY = "Resources | where type in~ ('microsoft.network/networkinterfaces') | project id, name"
ARG_PATH = "/providers/Microsoft.ResourceGraph/resources"
#: Environment variables that would make DefaultAzureCredential pick something else.
OTHER_CREDENTIAL_ENV = (
    *("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"),
    *("AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TOKEN_CREDENTIALS"),
    *("AZURE_AUTHORITY_HOST", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT"),
    *("IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"),
)
ASG_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/applicationSecurityGroups/a"


class StaticCred:
    """A token credential that never talks to Entra ID."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int(time.time()) + 3600)


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    data: list[Row] = json.loads(ESTATE_JSON_PATH.read_text())["data"]
    return data


@pytest.fixture(scope="module")
def fake(rows: list[Row]) -> Iterator[FakeAzure]:
    """Shared, read-only: small ARM pages so every list needs several; no ARG throttling."""
    with FakeAzure(rows, arm_page_size=3, arg_quota=10_000) as instance:
        yield instance


@pytest.fixture
def nsg_fake(rows: list[Row]) -> Iterator[FakeAzure]:
    """Per test: for tests that write NSGs or inject faults."""
    with FakeAzure(rows, arg_quota=10_000) as instance:
        yield instance


def of_type(rows: list[Row], kind: str, subscription: str | None = None) -> list[Row]:
    return [
        r
        for r in rows
        if r["type"] == kind and (subscription is None or r["subscriptionId"] == subscription)
    ]


def clients(fake: FakeAzure, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments every client needs to talk to the fake."""
    return {"base_url": fake.url, "connection_verify": fake.ca_path, **kwargs}


def graph(fake: FakeAzure, **kwargs: Any) -> ResourceGraphClient:
    return ResourceGraphClient(StaticCred(), **clients(fake, **kwargs))


def network(fake: FakeAzure, subscription: str, **kwargs: Any) -> NetworkManagementClient:
    return NetworkManagementClient(StaticCred(), subscription, **clients(fake, **kwargs))


def raw(
    fake: FakeAzure,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request over plain http.client (bearer token unless ``headers`` say otherwise)."""
    port = urlsplit(fake.url).port
    context = ssl.create_default_context(cafile=fake.ca_path)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    sent = {"Authorization": "Bearer fake-token", "Content-Type": "application/json"}
    sent.update(headers or {})
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        connection.close()


def data(page: QueryResponse) -> list[Row]:
    """The rows of an objectArray page (the SDK types ``data`` as a mapping; it is a list)."""
    return cast(list[Row], page.data)


def first_nsg(rows: list[Row]) -> Row:
    return next(r for r in rows if r["type"] == NSG_TYPE and r["properties"]["securityRules"])


def split_id(resource_id: str) -> tuple[str, str, str]:
    parts = resource_id.split("/")
    return parts[2], parts[4], parts[-1]


def new_rule(name: str, priority: int, direction: str = "Inbound") -> SecurityRule:
    # The typed (nested) form; flattened kwargs work at runtime too but do not type-check.
    return SecurityRule(
        name=name,
        properties=SecurityRulePropertiesFormat(
            protocol="Tcp",
            source_address_prefix="10.0.0.0/8",
            source_port_range="*",
            destination_address_prefix="*",
            destination_port_range="443",
            access="Allow",
            priority=priority,
            direction=direction,
        ),
    )


def nsg_body(location: str | None, rules: list[SecurityRule]) -> NetworkSecurityGroup:
    return NetworkSecurityGroup(
        location=location, properties=NetworkSecurityGroupPropertiesFormat(security_rules=rules)
    )


def with_rule(nsg: NetworkSecurityGroup, rule: SecurityRule) -> NetworkSecurityGroup:
    existing = nsg.properties.security_rules if nsg.properties else None
    body = nsg_body(nsg.location, [*(existing or []), rule])
    body.tags = nsg.tags
    return body


def put_if_match(
    client: NetworkManagementClient, nsg_id: str, nsg: NetworkSecurityGroup, rule: SecurityRule
) -> Any:
    """Start the conditional PUT zts does: the NSG read earlier plus one rule, If-Match its etag."""
    _, group, name = split_id(nsg_id)
    return client.network_security_groups.begin_create_or_update(
        group, name, with_rule(nsg, rule), headers={"If-Match": nsg.etag}, polling_interval=0
    )


# --------------------------------------------------------------------------- Resource Graph


def test_resource_graph_pages_through_all_nics(fake: FakeAzure, rows: list[Row]) -> None:
    client = graph(fake)
    seen: list[Row] = []
    token: str | None = None
    pages = 0
    while True:
        page = client.resources(
            QueryRequest(query=NIC_QUERY, options=QueryRequestOptions(top=10, skip_token=token))
        )
        pages += 1
        assert page.total_records == len(of_type(rows, NIC_TYPE))
        assert page.result_truncated == "false"
        seen.extend(data(page))
        token = page.skip_token
        if not token:
            break
    nics = of_type(rows, NIC_TYPE)
    assert len(seen) == len(nics)
    assert pages == -(-len(nics) // 10)
    ids = [r["id"] for r in seen]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids, key=str.lower)
    assert seen[0]["subscriptionId"] and "etag" not in seen[0]  # ARG shape, as stored
    assert {r["type"] for r in seen} == {NIC_TYPE}


def test_resource_graph_scopes_and_containers(fake: FakeAzure, rows: list[Row]) -> None:
    client = graph(fake)
    subs = of_type(rows, SUBSCRIPTION_TYPE)
    containers = client.resources(
        QueryRequest(
            query="ResourceContainers | where type =~ 'microsoft.resources/subscriptions'",
            options=QueryRequestOptions(top=1000),
        )
    )
    assert {(r["subscriptionId"], r["name"]) for r in data(containers)} == {
        (s["subscriptionId"], s["name"]) for s in subs
    }
    everything = client.resources(QueryRequest(query="ResourceContainers"))
    assert everything.total_records == len(subs) + len(of_type(rows, RESOURCE_GROUP_TYPE))

    one = subs[0]["subscriptionId"].upper()  # scopes compare case-insensitively
    scoped = client.resources(QueryRequest(subscriptions=[one], query=NIC_QUERY))
    assert scoped.total_records == len(of_type(rows, NIC_TYPE, subs[0]["subscriptionId"]))
    assert {r["subscriptionId"] for r in data(scoped)} == {subs[0]["subscriptionId"]}


def test_resource_graph_management_group_scope(rows: list[Row]) -> None:
    subs = [s["subscriptionId"] for s in of_type(rows, SUBSCRIPTION_TYPE)][:2]
    with FakeAzure(rows, management_groups={"mg-prod": subs}) as fake:
        page = graph(fake).resources(QueryRequest(management_groups=["MG-PROD"], query=NIC_QUERY))
    assert page.total_records == sum(len(of_type(rows, NIC_TYPE, s)) for s in subs)


def test_resource_graph_response_headers(fake: FakeAzure) -> None:
    """How to read the throttling headers with azure-mgmt-resourcegraph 8.0.1.

    The operation calls ``cls(pipeline_response, deserialized, {})``: the third argument is an
    always-empty dict, so read the headers from ``pipeline_response.http_response.headers``.
    """

    def with_headers(
        pipeline_response: Any, deserialized: QueryResponse, _headers: dict[str, Any]
    ) -> tuple[QueryResponse, dict[str, str]]:
        return deserialized, dict(pipeline_response.http_response.headers)

    page, headers = cast(
        tuple[QueryResponse, dict[str, str]],  # the stubs do not follow `cls`
        graph(fake).resources(QueryRequest(query=NIC_QUERY), cls=with_headers),
    )
    assert page.count == len(page.data) > 0
    assert int(headers["x-ms-user-quota-remaining"]) >= 0
    assert re.fullmatch(r"\d\d:\d\d:\d\d", headers["x-ms-user-quota-resets-after"])


def test_resource_graph_rejects_foreign_skip_token_and_big_top(fake: FakeAzure) -> None:
    client = graph(fake)
    token = client.resources(
        QueryRequest(query=NIC_QUERY, options=QueryRequestOptions(top=1))
    ).skip_token
    assert token
    other = "Resources | where type in~ ('microsoft.compute/virtualmachines')"
    with pytest.raises(HttpResponseError) as foreign:
        client.resources(
            QueryRequest(query=other, options=QueryRequestOptions(top=1, skip_token=token))
        )
    assert foreign.value.status_code == 400
    with pytest.raises(HttpResponseError) as too_big:
        client.resources(QueryRequest(query=NIC_QUERY, options=QueryRequestOptions(top=1001)))
    assert too_big.value.status_code == 400


def test_resource_graph_throttling(rows: list[Row]) -> None:
    with FakeAzure(rows, arg_quota=3, arg_quota_window_s=1.0) as fake:
        strict = graph(fake, retry_total=0)
        for _ in range(3):
            strict.resources(QueryRequest(query=NIC_QUERY))
        with pytest.raises(HttpResponseError) as throttled:
            strict.resources(QueryRequest(query=NIC_QUERY))
        assert throttled.value.status_code == 429
        response = cast(HttpResponse, throttled.value.response)
        assert int(response.headers["Retry-After"]) >= 0
        assert response.headers["x-ms-user-quota-remaining"] == "0"
        assert "x-ms-user-quota-resets-after" in response.headers

        started = time.monotonic()
        page = graph(fake).resources(QueryRequest(query=NIC_QUERY))  # default retry policy
        assert page.total_records == len(of_type(rows, NIC_TYPE))
        assert time.monotonic() - started < 5
        statuses = [r.status for r in fake.requests if r.path == ARG_PATH]
    assert statuses == [200, 200, 200, 429, 429, 200]


# --------------------------------------------------------------------------- ARM lists


def test_subscriptions_list_follows_next_links(fake: FakeAzure, rows: list[Row]) -> None:
    before = fake.count("GET", "/subscriptions")
    subs = list(SubscriptionClient(StaticCred(), **clients(fake)).subscriptions.list())
    expected = {(s["subscriptionId"], s["name"]) for s in of_type(rows, SUBSCRIPTION_TYPE)}
    assert {(s.subscription_id, s.display_name) for s in subs} == expected
    assert {s.state for s in subs} == {"Enabled"}
    assert fake.count("GET", "/subscriptions") - before == -(-len(expected) // 3)


def test_network_lists_page_across_next_links(fake: FakeAzure, rows: list[Row]) -> None:
    total = 0
    for sub in of_type(rows, SUBSCRIPTION_TYPE):
        client = network(fake, sub["subscriptionId"])
        nics = list(client.network_interfaces.list_all())
        assert {n.id for n in nics} == {
            r["id"] for r in of_type(rows, NIC_TYPE, sub["subscriptionId"])
        }
        assert all(n.type == "Microsoft.Network/networkInterfaces" for n in nics)
        total += len(nics)
        nsgs = list(client.network_security_groups.list_all())
        assert all(n.etag for n in nsgs)
    assert total == len(of_type(rows, NIC_TYPE))


def test_arm_list_shape_and_next_link(fake: FakeAzure, rows: list[Row]) -> None:
    sub = max(
        of_type(rows, SUBSCRIPTION_TYPE),
        key=lambda s: len(of_type(rows, NIC_TYPE, s["subscriptionId"])),
    )
    path = f"/SUBSCRIPTIONS/{sub['subscriptionId']}/providers/microsoft.network/NETWORKINTERFACES"
    status, _, body = raw(fake, "GET", f"{path}?api-version=2024-05-01")
    assert status == 200 and len(body["value"]) == 3
    item = body["value"][0]
    assert item["type"] == "Microsoft.Network/networkInterfaces"
    assert not {"subscriptionId", "resourceGroup", "tenantId"} & item.keys()
    next_link = urlsplit(body["nextLink"])
    assert body["nextLink"].startswith(fake.url)
    assert parse_qs(next_link.query)["api-version"] == ["2024-05-01"]
    assert "$skiptoken" in parse_qs(next_link.query)


def test_unknown_subscription_is_404(fake: FakeAzure) -> None:
    client = network(fake, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(HttpResponseError) as missing:
        list(client.network_interfaces.list_all())
    assert missing.value.status_code == 404
    assert missing.value.error is not None and missing.value.error.code == "SubscriptionNotFound"


def test_resource_management_lists(fake: FakeAzure, rows: list[Row]) -> None:
    sub = of_type(rows, SUBSCRIPTION_TYPE)[0]["subscriptionId"]
    client = ResourceManagementClient(StaticCred(), sub, **clients(fake))
    vms = list(client.resources.list(filter="resourceType eq 'Microsoft.Compute/virtualMachines'"))
    assert {v.id for v in vms} == {r["id"] for r in of_type(rows, VM_TYPE, sub)}
    assert all(v.type == "Microsoft.Compute/virtualMachines" and v.properties is None for v in vms)
    groups = list(client.resource_groups.list())
    assert {g.name for g in groups} == {r["name"] for r in of_type(rows, RESOURCE_GROUP_TYPE, sub)}


# --------------------------------------------------------------------------- authentication


def test_bearer_token_and_identity_header_are_required(fake: FakeAzure) -> None:
    assert raw(fake, "GET", "/subscriptions", headers={"Authorization": "Bearer nope"})[0] == 401
    status, _, body = raw(fake, "GET", "/msi/token?resource=https://management.azure.com")
    assert status == 401 and "statusCode" in body
    status, _, body = raw(
        fake,
        "GET",
        "/msi/token?resource=https://management.azure.com&api-version=2019-08-01",
        headers={"X-IDENTITY-HEADER": "x"},
    )
    assert status == 200 and body["access_token"] == "fake-token"
    assert int(body["expires_on"]) > time.time()


def test_default_azure_credential_uses_app_service_identity(
    fake: FakeAzure, rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in OTHER_CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{fake.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "local-secret")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_path)
    before = fake.count("GET", "/msi/token")
    credential = DefaultAzureCredential()
    try:
        assert credential.get_token("https://management.azure.com/.default").token == "fake-token"
        sub = of_type(rows, SUBSCRIPTION_TYPE)[0]["subscriptionId"]
        client = NetworkManagementClient(credential, sub, base_url=fake.url)  # CA from the env
        assert len(list(client.network_interfaces.list_all())) == len(of_type(rows, NIC_TYPE, sub))
    finally:
        credential.close()
    token_request = [r for r in fake.requests if r.path == "/msi/token"][-1]
    assert token_request.headers["x-identity-header"] == "local-secret"
    assert token_request.query["api-version"] == "2019-08-01"
    assert fake.count("GET", "/msi/token") - before == 1


# --------------------------------------------------------------------------- NSG writes


def test_nsg_update_with_if_match(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    stored = first_nsg(rows)
    sub, group, name = split_id(stored["id"])
    client = network(nsg_fake, sub)
    nsg = client.network_security_groups.get(group, name)
    assert nsg.etag == stored["etag"]
    updated = put_if_match(client, stored["id"], nsg, new_rule("zt-allow-https", 4000)).result()
    assert updated.etag != nsg.etag
    assert updated.provisioning_state == "Succeeded"
    assert "zt-allow-https" in {r.name for r in updated.security_rules}

    after = nsg_fake.nsg(stored["id"].upper())  # ids compare case-insensitively
    assert after["etag"] == updated.etag
    assert after["properties"]["provisioningState"] == "Succeeded"
    added = next(r for r in after["properties"]["securityRules"] if r["name"] == "zt-allow-https")
    assert added["id"] == f"{stored['id']}/securityRules/zt-allow-https"
    assert added["etag"] == updated.etag
    assert added["properties"]["provisioningState"] == "Succeeded"
    assert after["properties"]["defaultSecurityRules"]  # read-only parts survive
    put = next(r for r in nsg_fake.requests if r.method == "PUT")
    assert put.headers["if-match"] == nsg.etag
    assert put.status == 200
    assert [nsg_id for nsg_id, _ in nsg_fake.put_bodies] == [stored["id"]]
    assert nsg_fake.count("GET", "/operations/") == 2  # one InProgress, then Succeeded


def test_stale_etag_is_412(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    nsg_id = first_nsg(rows)["id"]
    sub, group, name = split_id(nsg_id)
    client = network(nsg_fake, sub)
    nsg = client.network_security_groups.get(group, name)
    put_if_match(client, nsg_id, nsg, new_rule("first", 4000)).result()
    with pytest.raises(HttpResponseError) as stale:
        put_if_match(client, nsg_id, nsg, new_rule("second", 4001))
    assert stale.value.status_code == 412
    assert stale.value.error is not None and stale.value.error.code == "PreconditionFailed"
    assert len(nsg_fake.put_bodies) == 1


def test_concurrent_writer_before_put_is_412(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    stored = first_nsg(rows)
    sub, group, name = split_id(stored["id"])
    client = network(nsg_fake, sub)
    nsg = client.network_security_groups.get(group, name)
    portal_rule = {
        "name": "portal-rule",
        "properties": {
            "protocol": "*", "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "22",
            "access": "Deny", "priority": 150, "direction": "Inbound",
        },
    }  # fmt: skip
    etags: list[str] = []
    nsg_fake.before_put(
        stored["id"],
        lambda: etags.append(
            nsg_fake.set_nsg(stored["id"], {"properties": {"securityRules": [portal_rule]}})
        ),
    )
    with pytest.raises(HttpResponseError) as conflict:
        put_if_match(client, stored["id"], nsg, new_rule("zt", 4000))
    assert conflict.value.status_code == 412
    after = client.network_security_groups.get(group, name)
    assert [r.name for r in after.security_rules] == ["portal-rule"]
    assert after.etag == etags[0] != nsg.etag
    assert nsg_fake.put_bodies == []


def test_failed_operation_rolls_back(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    stored = first_nsg(rows)
    sub, group, name = split_id(stored["id"])
    client = network(nsg_fake, sub)
    nsg = client.network_security_groups.get(group, name)
    nsg_fake.lro_fail.add(stored["id"].lower())
    poller = put_if_match(client, stored["id"], nsg, new_rule("doomed", 4000))
    with pytest.raises(HttpResponseError, match="InternalServerError"):
        poller.result()
    after = nsg_fake.nsg(stored["id"])
    assert [r["name"] for r in after["properties"]["securityRules"]] == [
        r["name"] for r in stored["properties"]["securityRules"]
    ]
    assert after["etag"] != nsg.etag
    assert after["properties"]["provisioningState"] == "Failed"


def test_hanging_operation_stays_in_progress(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    stored = first_nsg(rows)
    sub, group, name = split_id(stored["id"])
    client = network(nsg_fake, sub)
    nsg = client.network_security_groups.get(group, name)
    nsg_fake.lro_hang.add(stored["id"].lower())
    poller = client.network_security_groups.begin_create_or_update(
        group, name, with_rule(nsg, new_rule("slow", 4000)), polling_interval=0.02
    )
    poller.wait(timeout=0.3)
    assert not poller.done()
    assert nsg_fake.nsg(stored["id"])["properties"]["provisioningState"] == "Updating"
    nsg_fake.lro_hang.clear()
    assert poller.result(timeout=5).provisioning_state == "Succeeded"


def test_create_new_nsg(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    sub, group, _ = split_id(first_nsg(rows)["id"])
    query = QueryRequest(
        query="Resources | where type =~ 'microsoft.network/networksecuritygroups'"
    )
    before = graph(nsg_fake).resources(query).total_records  # also warms the fake's id cache
    client = network(nsg_fake, sub)
    created = client.network_security_groups.begin_create_or_update(
        group, "nsg-new", nsg_body("westeurope", [new_rule("zt", 200)]), polling_interval=0
    ).result()
    assert created.provisioning_state == "Succeeded"
    assert created.properties is not None and created.properties.default_security_rules
    assert next(r for r in nsg_fake.requests if r.method == "PUT").status == 201
    assert graph(nsg_fake).resources(query).total_records == before + 1
    assert "nsg-new" in {n.name for n in client.network_security_groups.list_all()}


def test_duplicate_priorities_are_rejected(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    sub, group, name = split_id(first_nsg(rows)["id"])
    client = network(nsg_fake, sub)
    nsg = client.network_security_groups.get(group, name)
    body = nsg_body(
        nsg.location, [new_rule("a", 300), new_rule("b", 300), new_rule("c", 300, "Outbound")]
    )
    with pytest.raises(HttpResponseError) as invalid:
        client.network_security_groups.begin_create_or_update(group, name, body, polling_interval=0)
    assert invalid.value.status_code == 400
    assert invalid.value.error is not None and invalid.value.error.code == "SecurityRuleConflict"
    assert nsg_fake.put_bodies == []


def _rule(**overrides: Any) -> dict[str, Any]:
    props = {
        "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "443",
        "sourceAddressPrefix": "10.0.0.0/8", "destinationAddressPrefix": "*",
        "access": "Allow", "priority": 200, "direction": "Inbound",
    }  # fmt: skip
    props.update(overrides)
    return {"name": "r1", "properties": {k: v for k, v in props.items() if v is not None}}


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        (_rule(priority=99), "SecurityRuleInvalidPriority"),
        (_rule(priority=4097), "SecurityRuleInvalidPriority"),
        (_rule(direction="Sideways"), "SecurityRuleInvalidDirection"),
        (_rule(access="Maybe"), "SecurityRuleInvalidAccess"),
        (_rule(protocol="Gre"), "SecurityRuleInvalidProtocol"),
        (_rule(sourceAddressPrefixes=["10.1.0.0/16"]), "SecurityRuleInvalidParameters"),
        (_rule(destinationPortRanges=["80"]), "SecurityRuleInvalidParameters"),
        (_rule(sourceApplicationSecurityGroups=[{"id": ASG_ID}]), "SecurityRuleInvalidParameters"),
        (_rule(destinationPortRange="70000"), "SecurityRuleInvalidPortRange"),
        ({"properties": _rule()["properties"]}, "InvalidRequestFormat"),
    ],
)
def test_rule_validation(fake: FakeAzure, rows: list[Row], rule: dict[str, Any], code: str) -> None:
    stored = first_nsg(rows)
    body = {"location": stored["location"], "properties": {"securityRules": [rule]}}
    status, _, error = raw(fake, "PUT", f"{stored['id']}?api-version=2024-05-01", body)
    assert (status, error["error"]["code"]) == (400, code)


def test_rule_count_limit(fake: FakeAzure, rows: list[Row]) -> None:
    stored = first_nsg(rows)
    rules = [{**_rule(priority=100 + i), "name": f"r{i}"} for i in range(1001)]
    body = {"location": stored["location"], "properties": {"securityRules": rules}}
    status, _, error = raw(fake, "PUT", f"{stored['id']}?api-version=2024-05-01", body)
    assert (status, error["error"]["code"]) == (400, "SecurityRuleInvalidCount")


# --------------------------------------------------------------------------- faults


def test_faults_apply_before_routing(nsg_fake: FakeAzure, rows: list[Row]) -> None:
    sub = of_type(rows, SUBSCRIPTION_TYPE)[0]["subscriptionId"]
    nsg_fake.add_fault("GET", r"/networkInterfaces$", 500)  # azure-core retries a 500
    assert len(list(network(nsg_fake, sub).network_interfaces.list_all())) > 0
    nics = [r.status for r in nsg_fake.requests if r.path.endswith("/networkInterfaces")]
    assert nics == [500, 200]

    nsg_fake.add_fault("*", "/subscriptions$", 503, skip=1, headers={"x-test": "1"})
    assert raw(nsg_fake, "GET", "/subscriptions")[0] == 200
    status, headers, body = raw(nsg_fake, "GET", "/subscriptions")
    assert (status, headers["x-test"], body["error"]["code"]) == (503, "1", "ServiceUnavailable")
    assert raw(nsg_fake, "GET", "/subscriptions")[0] == 200

    nsg_fake.add_fault("POST", "ResourceGraph", 429, body={"error": {"code": "RateLimiting"}})
    status, headers, body = raw(nsg_fake, "POST", ARG_PATH, {"query": NIC_QUERY})
    assert (status, headers["Retry-After"], body["error"]["code"]) == (429, "0", "RateLimiting")
    assert Counter(r.status for r in nsg_fake.requests if r.path == ARG_PATH) == {429: 1}
