"""Structure of the azd/Bicep infrastructure, checked offline.

The Bicep CLI cannot be installed here, so nothing is compiled: every .bicep file is parsed with
tree-sitter-bicep (syntax), and the tests assert what a reviewer would check by hand (structure):
identities instead of keys, least-privilege role assignments at the expected scopes, the Flex
Consumption shape, the Event Grid filters and dead-lettering, and that azure.yaml,
main.parameters.json and docs/deploy.md agree with the templates. Whether Azure accepts the
templates (API versions, property names, deployment-time rules) is not verified here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.infra.bicep_tree import (
    BicepFile,
    Expr,
    Module,
    code_without_comments,
    module_output_references,
    parse_file,
    text_of,
    undeclared_references,
)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


def bicep(relative: str) -> BicepFile:
    return parse_file(INFRA / relative)


def rel(path: Path) -> str:
    return path.relative_to(INFRA).as_posix()


def module_target(owner: BicepFile, module: Module) -> BicepFile:
    return parse_file((owner.path.parent / module.path).resolve())


# --- Expected values, written down independently of the templates ---------------------------

# Built-in role definition GUIDs (Azure built-in roles reference, MicrosoftDocs azure-docs,
# articles/role-based-access-control/built-in-roles.md; ACS role from Microsoft Q&A / community
# templates, since the reference table does not list it).
BUILT_IN_ROLES = {
    "reader": ("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
    "networkContributor": ("Network Contributor", "4d97b98b-1d4f-4787-a291-c67834d212e7"),
    "logAnalyticsReader": ("Log Analytics Reader", "73c42c96-874c-492b-b04d-ab87d138a893"),
    "storageBlobDataOwner": ("Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"),
    "storageBlobDataContributor": ("Storage Blob Data Contributor",
                                   "ba92f5b4-2d11-453d-a403-e96b0029c9fe"),
    "storageQueueDataContributor": ("Storage Queue Data Contributor",
                                    "974c5e8b-45b9-4653-ba55-5f855dd0fb88"),
    "storageTableDataContributor": ("Storage Table Data Contributor",
                                    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"),
    "keyVaultSecretsUser": ("Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6"),
    "keyVaultSecretsOfficer": ("Key Vault Secrets Officer",
                               "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"),
    "monitoringMetricsPublisher": ("Monitoring Metrics Publisher",
                                   "3913510d-42f4-4e42-8a64-420c390055eb"),
    "communicationAndEmailServiceOwner": ("Communication and Email Service Owner",
                                          "09976791-48a7-449e-bb21-39d1a415f350"),
}

# Roles zts must never hold: Owner, Contributor, User Access Administrator,
# Role Based Access Control Administrator, Storage Account Contributor (lists keys).
FORBIDDEN_ROLE_GUIDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",
}

# Every role assignment in infra/: (file, symbol) -> (role, scope, principal, condition).
# Scope None means the deployment scope of that file (the subscription, resource group or
# management group the module is deployed to).
APP = "principalId"
EXPECTED_ROLE_ASSIGNMENTS = {
    ("modules/app-access.bicep", "appBlobDataOwner"):
        ("storageBlobDataOwner", "storage", APP, None),
    ("modules/app-access.bicep", "appQueueDataContributor"):
        ("storageQueueDataContributor", "storage", APP, None),
    ("modules/app-access.bicep", "appTableDataContributor"):
        ("storageTableDataContributor", "storage", APP, None),
    ("modules/app-access.bicep", "appKeyVaultSecretsUser"):
        ("keyVaultSecretsUser", "vault", APP, None),
    ("modules/app-access.bicep", "appMetricsPublisher"):
        ("monitoringMetricsPublisher", "applicationInsights", APP, None),
    ("modules/app-access.bicep", "appEmailSender"):
        ("communicationAndEmailServiceOwner", "communicationService", APP, None),
    ("modules/app-access.bicep", "deployerSecretsOfficer"):
        ("keyVaultSecretsOfficer", "vault", "deployerPrincipalId", "!empty(deployerPrincipalId)"),
    ("modules/target-subscription.bicep", "readerAssignment"):
        ("reader", None, APP, "readerAtSubscription"),
    ("modules/target-subscription.bicep", "networkContributorAssignment"):
        ("networkContributor", None, APP,
         "enforcementEnabled && !enforcementScopedToResourceGroups"),
    ("modules/network-contributor-rg.bicep", "networkContributorAssignment"):
        ("networkContributor", None, APP, "enforcementEnabled"),
    ("modules/workspace-reader.bicep", "workspaceReader"):
        ("logAnalyticsReader", "workspace", APP, None),
    ("modules/deadletter-access.bicep", "topicDeadLetterWriter"):
        ("storageBlobDataContributor", "storage::blobService::deadLetterContainer", APP, None),
    ("modules/management-group-reader.bicep", "readerAssignment"):
        ("reader", None, APP, None),
}

# Where each module must be deployed (scope expression in main.bicep, and the file's targetScope).
EXPECTED_MAIN_MODULE_SCOPES = {
    "identity": "rg",
    "monitoring": "rg",
    "storage": "rg",
    "keyVault": "rg",
    "communication": "rg",
    "appAccess": "rg",
    "functionApp": "rg",
    "deadLetterAccess": "rg",
    "workspaceReader": "resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)",
    "targets": "subscription(subscriptionId)",
    "enforcementResourceGroupAccess":
        "resourceGroup(split(resourceGroupId, '/')[2], split(resourceGroupId, '/')[4])",
    "managementGroupReader": "tenant()",
    "eventSubscriptions": "resourceGroup(subscriptionId, eventsResourceGroupName)",
}

# The resource_events handler: Event Grid schema, these event types only.
EXPECTED_EVENT_TYPES = {
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceDeleteSuccess",
    "Microsoft.Resources.ResourceActionSuccess",
}
EXPECTED_OPERATION_PREFIXES = {
    "Microsoft.Network/networkInterfaces",
    "Microsoft.Network/networkSecurityGroups",
    "Microsoft.Network/networkSecurityGroups/securityRules",
    "Microsoft.Network/applicationSecurityGroups",
    "Microsoft.Network/virtualNetworks",
    "Microsoft.Network/virtualNetworks/subnets",
    "Microsoft.Network/privateEndpoints",
    "Microsoft.Compute/virtualMachines",
    "Microsoft.Resources/tags",
}
ADVANCED_FILTER_VALUE_LIMIT = 25  # Event Grid: 25 advanced-filter values per subscription

# The app settings the Functions app gets, exactly (docs/deploy.md documents each one).
EXPECTED_APP_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "ZTS_DISCOVERY_SCHEDULE",
    "ZTS_ANALYTICS_SCHEDULE",
    "ZTS_STORAGE_TABLE_ENDPOINT",
    "ZTS_STORAGE_QUEUE_ENDPOINT",
    "ZTS_TABLE_PREFIX",
    "ZTS_SUBSCRIPTIONS",
    "ZTS_MANAGEMENT_GROUP",
    "ZTS_POLICY_PATH",
    "ZTS_ENFORCEMENT_ENABLED",
    "ZTS_LA_WORKSPACE_ID",
    "ZTS_ADX_CLUSTER_URI",
    "ZTS_ADX_DATABASE",
    "ZTS_ADX_FLOW_TABLE",
    "ZTS_ADX_IP_TABLE",
    "ZTS_ACS_ENDPOINT",
    "ZTS_EMAIL_SENDER",
    "ZTS_EMAIL_RECIPIENTS",
    "ZTS_ALERT_CONFIG",
    "ZTS_ANALYTICS_CONFIG",
    "ZTS_TEAMS_WEBHOOK_URL",
}
# Flex Consumption rejects or ignores these ("Flex Consumption plan deprecations").
FLEX_FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_TIME_ZONE",
    "TZ",
    "AzureWebJobsStorage",  # the connection-string form
}

EXPECTED_AZD_OUTPUTS = {
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "AZURE_RESOURCE_GROUP",
    "AZURE_FUNCTION_APP_NAME",
    "SERVICE_API_NAME",
    "SERVICE_API_URI",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_KEY_VAULT_NAME",
    "AZURE_MANAGED_IDENTITY_CLIENT_ID",
    "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID",
}


def all_role_assignments() -> dict[tuple[str, str], object]:
    kind = "Microsoft.Authorization/roleAssignments"
    return {(rel(path), resource.symbol): resource
            for path in BICEP_FILES for resource in parse_file(path).resources_of_type(kind)}


# --- Syntax ------------------------------------------------------------------------------------


def test_the_expected_bicep_files_exist() -> None:
    names = {rel(p) for p in BICEP_FILES}
    assert "main.bicep" in names
    assert {
        "modules/roles.bicep",
        "modules/function-app.bicep",
        "modules/storage.bicep",
        "modules/target-subscription.bicep",
        "modules/event-subscription.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_bicep_file_parses_without_errors(path: Path) -> None:
    parsed = parse_file(path)
    lines = parsed.text.splitlines()
    report = [
        f"{rel(path)}:{line}:{col}: {kind} near {lines[line - 1].strip()!r}"
        for line, col, kind in parsed.errors
    ]
    assert not report, "\n".join(report)


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_no_object_spread_which_the_grammar_cannot_check(path: Path) -> None:
    assert "..." not in code_without_comments(parse_file(path))


# --- Cross-file consistency (what `bicep build` would reject) --------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_every_referenced_name_is_declared(path: Path) -> None:
    assert not undeclared_references(parse_file(path))


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_modules_exist_and_get_exactly_their_parameters(path: Path) -> None:
    owner = parse_file(path)
    for module in owner.modules:
        target_path = (path.parent / module.path).resolve()
        assert target_path.is_file(), f"{rel(path)}:{module.line}: no {module.path}"
        target = parse_file(target_path)
        passed = set(module.body.get("params", {}))
        declared = set(target.params)
        required = {n for n, p in target.params.items() if not p.has_default}
        assert passed <= declared, f"{module.symbol}: unknown params {passed - declared}"
        assert required <= passed, f"{module.symbol}: missing params {required - passed}"


SCOPE_FUNCTIONS = {
    "subscription(": "subscription",
    "tenant(": "tenant",
    "managementGroup(": "managementGroup",
    "resourceGroup(": "resourceGroup",
}


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_modules_are_deployed_at_the_scope_they_declare(path: Path) -> None:
    owner = parse_file(path)
    groups = owner.resources_of_type("Microsoft.Resources/resourceGroups")
    resource_groups = {r.symbol for r in groups}
    for module in owner.modules:
        scope = text_of(module.body.get("scope", Expr("")))
        if not scope:
            kind = owner.target_scope
        elif scope in resource_groups:
            kind = "resourceGroup"
        else:
            kind = next(k for prefix, k in SCOPE_FUNCTIONS.items() if scope.startswith(prefix))
        assert module_target(owner, module).target_scope == kind, module.symbol


def test_main_module_scopes() -> None:
    main = bicep("main.bicep")
    scopes = {m.symbol: text_of(m.body.get("scope")) for m in main.modules}
    assert scopes == EXPECTED_MAIN_MODULE_SCOPES


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_referenced_module_outputs_exist(path: Path) -> None:
    owner = parse_file(path)
    modules = {m.symbol: m for m in owner.modules}
    references = module_output_references(owner)
    assert references or not owner.modules or rel(path) == "modules/management-group-hop.bicep"
    for symbol, output in references:
        assert output in module_target(owner, modules[symbol]).outputs, f"{symbol}.{output}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_imports_name_exported_variables(path: Path) -> None:
    owner = parse_file(path)
    for names, source in owner.imports:
        exported = parse_file((path.parent / source).resolve()).exported_variables
        assert set(names) <= exported, f"{rel(path)} imports {names} from {source}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_api_versions_are_stable_and_deterministic_names(path: Path) -> None:
    parsed = parse_file(path)
    for resource in parsed.resources:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", resource.api_version), (
            f"{rel(path)}:{resource.line}: {resource.type}@{resource.api_version}"
        )
    assert not {"utcNow", "newGuid"} & set(parsed.call_names), "names must be deterministic"


# --- No keys, no connection strings ------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_no_key_listing_or_key_material(path: Path) -> None:
    parsed = parse_file(path)
    listing = [c for c in parsed.call_names if c.lower().startswith("list")]
    assert not listing, f"{rel(path)} calls {listing}"
    code = code_without_comments(parsed)
    for marker in ("AccountKey=", "SharedAccessKey", "DefaultEndpointsProtocol", "accesskey="):
        assert marker.lower() not in code.lower(), f"{rel(path)} contains {marker}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_only_the_application_insights_connection_string(path: Path) -> None:
    code = code_without_comments(parse_file(path))
    for word in re.findall(r"[A-Za-z_.]*connection_?string[A-Za-z_]*", code, flags=re.IGNORECASE):
        assert "applicationinsights" in word.lower().replace("_", ""), f"{rel(path)}: {word}"


def test_storage_account_is_identity_only() -> None:
    (account,) = bicep("modules/storage.bicep").resources_of_type(
        "Microsoft.Storage/storageAccounts")
    props = account.body["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True


def test_storage_declares_the_containers_and_queues() -> None:
    storage = bicep("modules/storage.bicep")
    (containers,) = storage.resources_of_type(
        "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert containers.body["properties"] == {"publicAccess": "None"}
    assert containers.loop == "for containerName in containerNames"
    assert storage.variables["containerNames"] == [
        Expr("deploymentContainerName"), Expr("deadLetterContainerName")]
    main = bicep("main.bicep")
    assert main.module("storage").body["params"]["queueNames"] == [
        "nsg-reconcile", "nsg-reconcile-poison"]


# --- The Functions app --------------------------------------------------------------------------


def test_flex_consumption_plan() -> None:
    (plan,) = bicep("modules/function-app.bicep").resources_of_type("Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.body["properties"]["reserved"] is True


def test_function_app_uses_the_user_assigned_identity_everywhere() -> None:
    app_file = bicep("modules/function-app.bicep")
    app = app_file.resource("functionApp")
    assert app.body["kind"] == "functionapp,linux"
    assert app.body["identity"]["type"] == "UserAssigned"
    assert list(app.body["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    props = app.body["properties"]
    assert props["httpsOnly"] is True
    assert text_of(props["keyVaultReferenceIdentity"]) == "identityId"
    config = props["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": Expr("pythonVersion")}
    assert app_file.params["pythonVersion"].default == "3.11"
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": Expr("identityId"),
    }
    assert set(config["scaleAndConcurrency"]) == {"instanceMemoryMB", "maximumInstanceCount"}
    assert "'azd-service-name': 'api'" in text_of(app.body["tags"])


def test_app_settings_are_identity_based_and_complete() -> None:
    settings_resource = bicep("modules/function-app.bicep").resource("appSettings")
    assert settings_resource.type == "Microsoft.Web/sites/config"
    assert settings_resource.body["name"] == "appsettings"
    settings = settings_resource.body["properties"]
    assert set(settings) == EXPECTED_APP_SETTINGS
    assert not FLEX_FORBIDDEN_SETTINGS & set(settings)
    # The queue triggers use connection="AzureWebJobsStorage": these settings serve them too.
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == Expr("identityClientId")
    assert settings["AzureWebJobsStorage__accountName"] == Expr("storage.name")
    assert settings["AZURE_CLIENT_ID"] == Expr("identityClientId")
    assert ".queue." in text_of(settings["ZTS_STORAGE_QUEUE_ENDPOINT"])
    assert "Authorization=AAD" in text_of(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"])
    assert "@Microsoft.KeyVault(SecretUri=" in text_of(settings["ZTS_TEAMS_WEBHOOK_URL"])


def test_application_insights_accepts_only_entra_ingestion() -> None:
    (component,) = bicep("modules/monitoring.bicep").resources_of_type(
        "Microsoft.Insights/components")
    assert component.body["properties"]["DisableLocalAuth"] is True
    assert text_of(component.body["properties"]["WorkspaceResourceId"]) == "logAnalytics.id"


def test_key_vault_uses_rbac_and_purge_protection() -> None:
    kv = bicep("modules/keyvault.bicep")
    (vault,) = kv.resources_of_type("Microsoft.KeyVault/vaults")
    props = vault.body["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props
    (secret,) = kv.resources_of_type("Microsoft.KeyVault/vaults/secrets")
    assert secret.condition == "!empty(teamsWebhookUrl)"
    assert "@secure()" in kv.params["teamsWebhookUrl"].decorators
    assert "@secure()" in bicep("main.bicep").params["teamsWebhookUrl"].decorators


def test_communication_services_with_a_linked_azure_managed_domain() -> None:
    comm = bicep("modules/communication.bicep")
    (domain,) = comm.resources_of_type("Microsoft.Communication/emailServices/domains")
    assert domain.body["properties"]["domainManagement"] == "AzureManaged"
    (acs,) = comm.resources_of_type("Microsoft.Communication/communicationServices")
    assert acs.body["properties"]["linkedDomains"] == [Expr("managedDomain.id")]
    assert "mailFromSenderDomain" in text_of(comm.outputs["senderAddress"])


# --- Role assignments --------------------------------------------------------------------------


def test_role_definition_map_holds_the_built_in_guids() -> None:
    roles = bicep("modules/roles.bicep")
    assert roles.exported_variables == {"roleDefinitionIds"}
    assert roles.variables["roleDefinitionIds"] == {k: g for k, (_, g) in BUILT_IN_ROLES.items()}


def test_no_broad_roles_anywhere() -> None:
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8").lower()
        assert not [g for g in FORBIDDEN_ROLE_GUIDS if g in text], rel(path)


def test_every_role_assignment_matches_the_expected_table() -> None:
    found = all_role_assignments()
    assert set(found) == set(EXPECTED_ROLE_ASSIGNMENTS)
    for key, (role, scope, principal, condition) in EXPECTED_ROLE_ASSIGNMENTS.items():
        resource = found[key]
        props = resource.body["properties"]
        assert text_of(props["roleDefinitionId"]) == (
            f"tenantResourceId('Microsoft.Authorization/roleDefinitions', "
            f"roleDefinitionIds.{role})"
        ), key
        assert (text_of(resource.body["scope"]) if "scope" in resource.body else None) == scope, key
        assert text_of(props["principalId"]) == principal, key
        assert resource.condition == condition, key
        name = text_of(resource.body["name"])
        assert name.startswith("guid(") and principal in name and f".{role})" in name, key
        if principal == APP:
            assert props["principalType"] == "ServicePrincipal", key


def test_every_role_assignment_file_imports_the_role_map() -> None:
    for file, _ in EXPECTED_ROLE_ASSIGNMENTS:
        assert (("roleDefinitionIds",), "roles.bicep") in bicep(file).imports, file


def test_network_contributor_only_when_enforcement_is_enabled() -> None:
    holders = {f for (f, _), (role, *_rest) in EXPECTED_ROLE_ASSIGNMENTS.items()
               if role == "networkContributor"}
    for (file, _), resource in all_role_assignments().items():
        if "roleDefinitionIds.networkContributor" in text_of(
                resource.body["properties"]["roleDefinitionId"]):
            assert "enforcementEnabled" in (resource.condition or ""), file
    main = bicep("main.bicep")
    assert main.params["enforcementEnabled"].default is False
    for module in main.modules:
        if f"modules/{Path(module.path).name}" in holders:
            assert module.body["params"]["enforcementEnabled"] == Expr("enforcementEnabled")
    assert main.module("enforcementResourceGroupAccess").condition == "enforcementEnabled"


def test_reader_on_subscriptions_unless_a_management_group_is_used() -> None:
    main = bicep("main.bicep")
    params = main.module("targets").body["params"]
    assert params["readerAtSubscription"] == Expr("!useManagementGroup")
    assert main.module("managementGroupReader").condition == (
        "useManagementGroup && assignManagementGroupReader")


def test_traffic_analytics_workspace_reader_is_optional() -> None:
    main = bicep("main.bicep")
    assert main.module("workspaceReader").condition == "hasTrafficAnalyticsWorkspace"
    assert main.params["trafficAnalyticsWorkspaceResourceId"].default == ""


# --- Event Grid ---------------------------------------------------------------------------------


def test_system_topic_per_target_subscription() -> None:
    (topic,) = bicep("modules/event-topic.bicep").resources_of_type(
        "Microsoft.EventGrid/systemTopics")
    assert topic.body["location"] == "global"
    assert topic.body["identity"] == {"type": "SystemAssigned"}
    assert topic.body["properties"] == {
        "source": Expr("subscription().id"),
        "topicType": "Microsoft.Resources.Subscriptions",
    }
    main = bicep("main.bicep")
    targets = main.module("targets")
    assert targets.loop == "for (subscriptionId, i) in targetSubscriptions"
    assert bicep("modules/target-subscription.bicep").target_scope == "subscription"


def test_event_subscription_filters_delivery_and_dead_letters() -> None:
    events = bicep("modules/event-subscription.bicep")
    (subscription,) = events.resources_of_type(
        "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    props = subscription.body["properties"]
    assert props["eventDeliverySchema"] == "EventGridSchema"

    destination = props["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert text_of(destination["properties"]["resourceId"]).endswith(
        "/functions/resource_events'")
    assert destination["properties"]["maxEventsPerBatch"] == 1

    event_filter = props["filter"]
    assert event_filter["includedEventTypes"] == Expr("includedEventTypes")
    assert set(events.variables["includedEventTypes"]) == EXPECTED_EVENT_TYPES
    (advanced,) = event_filter["advancedFilters"]
    assert advanced == {"operatorType": "StringIn", "key": "data.operationName",
                        "values": Expr("operationNames")}
    operations = events.variables["operationNames"]
    assert len(operations) == len(set(operations)) <= ADVANCED_FILTER_VALUE_LIMIT
    assert {op.rsplit("/", 1)[0] for op in operations} == EXPECTED_OPERATION_PREFIXES
    assert {op.rsplit("/", 1)[1] for op in operations} == {"write", "delete"}
    for prefix in EXPECTED_OPERATION_PREFIXES:
        assert {f"{prefix}/write", f"{prefix}/delete"} <= set(operations), prefix

    assert set(props["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    assert "deadLetterDestination" not in props  # only the identity-based form
    dead_letter = props["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert set(dead_letter["deadLetterDestination"]["properties"]) == {
        "resourceId", "blobContainerName"}


def test_event_subscriptions_wait_for_the_code_and_the_dead_letter_grant() -> None:
    main = bicep("main.bicep")
    module = main.module("eventSubscriptions")
    assert module.condition == "eventSubscriptionsEnabled"
    assert module.body["dependsOn"] == [Expr("deadLetterAccess")]
    assert main.params["eventSubscriptionsEnabled"].default is False
    hook = (INFRA / "scripts" / "postdeploy.sh").read_text(encoding="utf-8")
    assert "azd env set ZTS_EVENTS_ENABLED true" in hook
    assert "azd provision --no-prompt" in hook


# --- main.bicep, azure.yaml, main.parameters.json, docs -----------------------------------------


def test_main_is_subscription_scoped_and_outputs_what_azd_needs() -> None:
    main = bicep("main.bicep")
    assert main.target_scope == "subscription"
    (rg,) = main.resources_of_type("Microsoft.Resources/resourceGroups")
    assert rg.body["tags"] == Expr("tags")
    assert set(main.outputs) >= EXPECTED_AZD_OUTPUTS
    assert {"environmentName", "location"} == {
        n for n, p in main.params.items() if not p.has_default}


def test_azure_yaml_names_the_function_service() -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert config["name"] == "zts"
    assert config["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert config["services"] == {
        "api": {"project": ".", "language": "python", "host": "function"}}
    hooks = config["hooks"]["postdeploy"]
    for variant in ("posix", "windows"):
        script = ROOT / hooks[variant]["run"]
        assert script.is_file(), script


def test_parameters_file_maps_azd_environment_to_declared_parameters() -> None:
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    main = bicep("main.bicep")
    parameters = document["parameters"]
    assert set(parameters) <= set(main.params)
    assert {n for n, p in main.params.items() if not p.has_default} <= set(parameters)
    assert parameters["environmentName"] == {"value": "${AZURE_ENV_NAME}"}
    assert parameters["location"] == {"value": "${AZURE_LOCATION}"}
    assert parameters["principalId"] == {"value": "${AZURE_PRINCIPAL_ID=}"}
    for name, entry in parameters.items():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", entry["value"]), name


def test_deploy_doc_covers_every_parameter_setting_and_variable() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    main = bicep("main.bicep")
    missing = [p for p in main.params if f"`{p}`" not in doc]
    missing += [s for s in EXPECTED_APP_SETTINGS if f"`{s}`" not in doc]
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    for entry in document["parameters"].values():
        variable = re.match(r"\$\{([A-Z_]+)", entry["value"]).group(1)
        if f"`{variable}`" not in doc:
            missing.append(variable)
    for (_, _), (role, *_rest) in EXPECTED_ROLE_ASSIGNMENTS.items():
        if BUILT_IN_ROLES[role][0] not in doc:
            missing.append(BUILT_IN_ROLES[role][0])
    assert not missing, f"docs/deploy.md does not mention: {sorted(set(missing))}"
