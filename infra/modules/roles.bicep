// Built-in Azure role definitions that zts grants, in one place. Every role assignment in infra/
// imports this map, so tests/infra/test_bicep.py can check each grant against an expected table.
// The GUIDs are the same in every tenant; source: "Azure built-in roles"
// (learn.microsoft.com/azure/role-based-access-control/built-in-roles, table dated 2026-04).

@export()
@description('Built-in role definition GUIDs used by zts, by purpose.')
var roleDefinitionIds = {
  // Reader: view all resources, change nothing. Discovery (Resource Graph and ARM reads) on the
  // target subscriptions or a management group above them.
  reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
  // Network Contributor: manage networks (NSGs and their rules), not access to them, not VMs.
  // Only when enforcement is switched on, and only on the subscriptions or resource groups given.
  networkContributor: '4d97b98b-1d4f-4787-a291-c67834d212e7'
  // Log Analytics Reader: query the Traffic Analytics workspace (NTANetAnalytics, NTAIpDetails).
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
  // Storage Blob Data Owner: Functions host storage and the Flex Consumption deployment package
  // (the role the Functions documentation asks for with AzureWebJobsStorage__credential).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Storage Blob Data Contributor: the Event Grid system topics write dead letters (on the
  // dead-letter container only).
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // Storage Queue Data Contributor: the nsg-reconcile queue trigger and the event handler that
  // enqueues one message per affected NSG.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Storage Table Data Contributor: inventory, groups, plans, audit trail, alert fingerprints.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Key Vault Secrets User: read secret contents (the Teams webhook URL, via a Key Vault reference).
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // Key Vault Secrets Officer: the deployer may set or rotate the Teams webhook secret (optional).
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  // Monitoring Metrics Publisher: Microsoft Entra authenticated ingestion into Application Insights
  // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING; local auth is disabled on the component).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Communication and Email Service Owner: ACS has no send-only data-plane role and does not honour
  // custom roles; this is the narrowest built-in role that lets an Entra identity send email. It is
  // scoped to the zts Communication Services resource only (never Contributor).
  communicationAndEmailServiceOwner: '09976791-48a7-449e-bb21-39d1a415f350'
}
