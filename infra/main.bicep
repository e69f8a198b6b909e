// zts: Zero Trust segmentation for Azure. Entry point for `azd up` (subscription scope, like the
// azd Flex Consumption samples): creates the app's resource group and everything in it, then the
// cross-subscription parts (role assignments and an Event Grid system topic per target
// subscription). Managed identity only: no keys, no connection strings. docs/deploy.md explains
// every parameter.

targetScope = 'subscription'

// --- azd environment ------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of the app (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the app resource group. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of whoever runs the deployment (azd sets AZURE_PRINCIPAL_ID). Used only when grantDeployerAccess is true.')
param principalId string = ''

@description('Principal type of the deployer.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Let the deployer set the Teams webhook secret (Key Vault Secrets Officer on the zts vault only).')
param grantDeployerAccess bool = true

// --- The estate zts governs -------------------------------------------------------------------

@description('Subscriptions zts discovers, watches and (with enforcement) writes. Empty (and no CSV): the deployment subscription.')
param targetSubscriptionIds array = []

@description('Same as targetSubscriptionIds, comma-separated (what azd passes from ZTS_TARGET_SUBSCRIPTION_IDS).')
param targetSubscriptionIdsCsv string = ''

@description('Management group to discover instead of a subscription list (ZTS_MANAGEMENT_GROUP). Event Grid still covers the target subscriptions.')
param managementGroupId string = ''

@description('Grant Reader on managementGroupId from this deployment (needs tenant-scope deployment rights; otherwise see docs/deploy.md).')
param assignManagementGroupReader bool = false

// --- Enforcement ----------------------------------------------------------------------------

@description('Let zts write NSGs (ZTS_ENFORCEMENT_ENABLED). Off: zts plans and reports only, and gets no write role.')
param enforcementEnabled bool = false

@description('Resource groups (resource ids) holding the NSGs zts manages. Set: Network Contributor only there; empty: on each target subscription.')
param enforcementResourceGroupIds array = []

@description('Same as enforcementResourceGroupIds, comma-separated (what azd passes from ZTS_ENFORCEMENT_RESOURCE_GROUP_IDS).')
param enforcementResourceGroupIdsCsv string = ''

// --- Events -----------------------------------------------------------------------------------

@description('Create the Event Grid subscriptions to the resource_events function. The function must already be deployed, so the first provision leaves this off and the azd postdeploy hook switches it on.')
param eventSubscriptionsEnabled bool = false

// --- Traffic analytics --------------------------------------------------------------------------

@description('Resource id of the existing Log Analytics workspace Traffic Analytics writes to. Empty: analytics off.')
param trafficAnalyticsWorkspaceResourceId string = ''

@description('Azure Data Explorer cluster URI holding NTANetAnalytics / NTAIpDetails exported from Log Analytics (large estates). Set: the detections run there. The identity needs the database Viewer role, granted by the ADX administrator (not by this deployment).')
param adxClusterUri string = ''

@description('The ADX database holding the exported tables (with adxClusterUri).')
param adxDatabase string = ''

@description('The ADX table names, when the export did not keep NTANetAnalytics / NTAIpDetails. Empty: the Traffic Analytics names.')
param adxFlowTable string = ''

@description('See adxFlowTable (the NTAIpDetails table).')
param adxIpTable string = ''

// --- Alerts -----------------------------------------------------------------------------------

@description('Comma-separated alert email recipients (ZTS_EMAIL_RECIPIENTS). Empty: no email.')
param emailRecipients string = ''

@description('Teams Workflows webhook URL, stored as a Key Vault secret. Empty: none written by this deployment.')
@secure()
param teamsWebhookUrl string = ''

@description('True when the Teams webhook secret was put in the vault by hand (az keyvault secret set); wires the Key Vault reference without passing the URL through azd.')
param teamsWebhookSecretExists bool = false

@description('Data location of Communication Services and Email (for example "United States", "Europe").')
param acsDataLocation string = 'United States'

// --- App behaviour ----------------------------------------------------------------------------

@description('ZTS_DISCOVERY_SCHEDULE: NCRONTAB, six fields, UTC.')
param discoverySchedule string = '0 0 * * * *'

@description('ZTS_ANALYTICS_SCHEDULE: NCRONTAB, six fields, UTC (Traffic Analytics lands every 10 or 60 minutes plus ingestion delay).')
param analyticsSchedule string = '0 15 * * * *'

@description('ZTS_TABLE_PREFIX: prefix of the state tables.')
param tablePrefix string = 'zts'

@description('ZTS_POLICY_PATH: the policy file deployed with the app, relative to the app root (the repository root).')
param policyPath string = 'policy.yaml'

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Maximum Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// --- Names --------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-zts-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var deadLetterContainerName = 'eventgrid-deadletter'
var teamsWebhookSecretName = 'teams-webhook-url'
var eventsResourceGroupName = 'rg-${environmentName}-zts-events'
var systemTopicName = 'evgt-zts-${environmentName}'

// --- Derived settings -------------------------------------------------------------------------

var csvTargetSubscriptions = filter(map(split(targetSubscriptionIdsCsv, ','), s => toLower(trim(s))), s => !empty(s))
var listedTargetSubscriptions = !empty(targetSubscriptionIds) ? map(targetSubscriptionIds, s => toLower(trim(s))) : csvTargetSubscriptions
var deploymentSubscriptionIds = array(subscription().subscriptionId)
var targetSubscriptions = !empty(listedTargetSubscriptions) ? listedTargetSubscriptions : deploymentSubscriptionIds
var useManagementGroup = !empty(managementGroupId)

var csvEnforcementResourceGroups = filter(map(split(enforcementResourceGroupIdsCsv, ','), r => trim(r)), r => !empty(r))
var enforcementResourceGroups = !empty(enforcementResourceGroupIds) ? enforcementResourceGroupIds : csvEnforcementResourceGroups
var enforcementScopedToResourceGroups = !empty(enforcementResourceGroups)

var hasTrafficAnalyticsWorkspace = !empty(trafficAnalyticsWorkspaceResourceId)
var workspaceIdParts = split(trafficAnalyticsWorkspaceResourceId, '/')
// /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{name}
var workspaceSubscriptionId = hasTrafficAnalyticsWorkspace ? workspaceIdParts[2] : subscription().subscriptionId
var workspaceResourceGroupName = hasTrafficAnalyticsWorkspace ? workspaceIdParts[4] : 'unused'
var workspaceName = hasTrafficAnalyticsWorkspace ? last(workspaceIdParts) : 'unused'

var teamsWebhookConfigured = !empty(teamsWebhookUrl) || teamsWebhookSecretExists
var deployerPrincipalId = grantDeployerAccess ? principalId : ''

// --- The app ----------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'zts-identity'
  scope: rg
  params: {
    name: 'id-zts-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'zts-monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-zts-${resourceToken}'
    applicationInsightsName: 'appi-zts-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'zts-storage'
  scope: rg
  params: {
    name: 'stzts${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    queueNames: [
      'nsg-reconcile'
      'nsg-reconcile-poison'
    ]
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'zts-keyvault'
  scope: rg
  params: {
    name: 'kv-zts-${resourceToken}'
    location: location
    tags: tags
    teamsWebhookSecretName: teamsWebhookSecretName
    teamsWebhookUrl: teamsWebhookUrl
  }
}

module communication 'modules/communication.bicep' = {
  name: 'zts-communication'
  scope: rg
  params: {
    emailServiceName: 'ecs-zts-${resourceToken}'
    communicationServiceName: 'acs-zts-${resourceToken}'
    dataLocation: acsDataLocation
    tags: tags
  }
}

module appAccess 'modules/app-access.bicep' = {
  name: 'zts-app-access'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    communicationServiceName: communication.outputs.communicationServiceName
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: principalType
  }
}

module workspaceReader 'modules/workspace-reader.bicep' = if (hasTrafficAnalyticsWorkspace) {
  name: 'zts-${resourceToken}-workspace-reader'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'zts-function-app'
  scope: rg
  dependsOn: [
    appAccess // the host needs its storage roles before it starts
  ]
  params: {
    planName: 'plan-zts-${resourceToken}'
    appName: functionAppName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    discoverySchedule: discoverySchedule
    analyticsSchedule: analyticsSchedule
    tablePrefix: tablePrefix
    subscriptionsCsv: useManagementGroup ? '' : join(targetSubscriptions, ',')
    managementGroupId: managementGroupId
    policyPath: policyPath
    enforcementEnabled: enforcementEnabled
    trafficAnalyticsWorkspaceCustomerId: hasTrafficAnalyticsWorkspace ? workspaceReader.outputs.customerId : ''
    adxClusterUri: adxClusterUri
    adxDatabase: adxDatabase
    adxFlowTable: adxFlowTable
    adxIpTable: adxIpTable
    acsEndpoint: communication.outputs.endpoint
    emailSender: communication.outputs.senderAddress
    emailRecipients: emailRecipients
    keyVaultUri: keyVault.outputs.uri
    teamsWebhookSecretName: teamsWebhookSecretName
    teamsWebhookConfigured: teamsWebhookConfigured
  }
}

// --- Across the estate --------------------------------------------------------------------------

module targets 'modules/target-subscription.bicep' = [
  for (subscriptionId, i) in targetSubscriptions: {
    name: 'zts-${resourceToken}-target-${i}'
    scope: subscription(subscriptionId)
    params: {
      principalId: identity.outputs.principalId
      readerAtSubscription: !useManagementGroup
      enforcementEnabled: enforcementEnabled
      enforcementScopedToResourceGroups: enforcementScopedToResourceGroups
      eventsResourceGroupName: eventsResourceGroupName
      systemTopicName: systemTopicName
      location: location
      tags: tags
    }
  }
]

module enforcementResourceGroupAccess 'modules/network-contributor-rg.bicep' = [
  for (resourceGroupId, i) in enforcementResourceGroups: if (enforcementEnabled) {
    name: 'zts-${resourceToken}-enforce-rg-${i}'
    scope: resourceGroup(split(resourceGroupId, '/')[2], split(resourceGroupId, '/')[4])
    params: {
      principalId: identity.outputs.principalId
      enforcementEnabled: enforcementEnabled
    }
  }
]

module managementGroupReader 'modules/management-group-hop.bicep' = if (useManagementGroup && assignManagementGroupReader) {
  name: 'zts-${resourceToken}-mg-reader'
  scope: tenant()
  params: {
    managementGroupId: managementGroupId
    principalId: identity.outputs.principalId
  }
}

module deadLetterAccess 'modules/deadletter-access.bicep' = [
  for (subscriptionId, i) in targetSubscriptions: {
    name: 'zts-deadletter-access-${i}'
    scope: rg
    params: {
      principalId: targets[i].outputs.systemTopicPrincipalId
      storageAccountName: storage.outputs.name
      deadLetterContainerName: deadLetterContainerName
    }
  }
]

module eventSubscriptions 'modules/event-subscription.bicep' = [
  for (subscriptionId, i) in targetSubscriptions: if (eventSubscriptionsEnabled) {
    name: 'zts-${resourceToken}-events-${i}'
    scope: resourceGroup(subscriptionId, eventsResourceGroupName)
    dependsOn: [
      deadLetterAccess
    ]
    params: {
      systemTopicName: targets[i].outputs.systemTopicName
      functionAppId: functionApp.outputs.id
      deadLetterStorageAccountId: storage.outputs.id
      deadLetterContainerName: deadLetterContainerName
    }
  }
]

// --- Outputs (azd writes them to .azure/<env>/.env) ---------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output ZTS_ACS_ENDPOINT string = communication.outputs.endpoint
output ZTS_EMAIL_SENDER string = communication.outputs.senderAddress
output ZTS_EVENTS_RESOURCE_GROUP string = eventsResourceGroupName
output ZTS_EFFECTIVE_TARGET_SUBSCRIPTIONS string = join(targetSubscriptions, ',')
output ZTS_EVENT_SUBSCRIPTIONS_DEPLOYED bool = eventSubscriptionsEnabled
