// The zts Functions app on the Flex Consumption plan (FC1, Linux, Python 3.11, v2 programming
// model), running as the user-assigned identity. Every connection is identity-based: the app
// settings below hold names and endpoints, never keys or connection strings (the Application
// Insights connection string names an ingestion endpoint; local auth is off on the component).
// Settings that Flex Consumption rejects (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENT*, SCM_DO_BUILD_DURING_DEPLOYMENT, ENABLE_ORYX_BUILD,
// WEBSITE_TIME_ZONE) are deliberately absent: the runtime comes from functionAppConfig.

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the function app (globally unique).')
param appName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags applied to the plan and the app (the app also gets azd-service-name: api).')
param tags object = {}

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('The app\'s storage account (host storage, package, queues, tables).')
param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (ingestion endpoint; Entra auth enforced).')
param applicationInsightsConnectionString string

@description('Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound of instances (also bounds the ARM write rate of the reconcile queue).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('ZTS_DISCOVERY_SCHEDULE: NCRONTAB (six fields, UTC) of the discovery timer.')
param discoverySchedule string

@description('ZTS_ANALYTICS_SCHEDULE: NCRONTAB (six fields, UTC) of the analytics timer.')
param analyticsSchedule string

@description('ZTS_TABLE_PREFIX: prefix of the zts state tables.')
param tablePrefix string

@description('ZTS_SUBSCRIPTIONS: comma-separated subscription ids to discover (empty with a management group).')
param subscriptionsCsv string

@description('ZTS_MANAGEMENT_GROUP: management group to discover instead of a subscription list.')
param managementGroupId string

@description('ZTS_POLICY_PATH: the policy file deployed with the app (path in the package).')
param policyPath string

@description('ZTS_ENFORCEMENT_ENABLED: whether reconcile writes NSGs.')
param enforcementEnabled bool

@description('ZTS_LA_WORKSPACE_ID: workspace (customer) id of the Traffic Analytics workspace, or empty.')
param trafficAnalyticsWorkspaceCustomerId string

@description('ZTS_ADX_CLUSTER_URI: Azure Data Explorer cluster holding the exported Traffic Analytics tables (https://<name>.<region>.kusto.windows.net); set: the detections run there instead of Log Analytics. Empty: off.')
param adxClusterUri string = ''

@description('ZTS_ADX_DATABASE: the ADX database with NTANetAnalytics / NTAIpDetails (the identity needs its Viewer role).')
param adxDatabase string = ''

@description('ZTS_ADX_FLOW_TABLE: the ADX table holding NTANetAnalytics rows; empty: NTANetAnalytics.')
param adxFlowTable string = ''

@description('ZTS_ADX_IP_TABLE: the ADX table holding NTAIpDetails rows; empty: NTAIpDetails.')
param adxIpTable string = ''

@description('ZTS_ACS_ENDPOINT: Communication Services endpoint.')
param acsEndpoint string

@description('ZTS_EMAIL_SENDER: sender address on the Azure-managed domain.')
param emailSender string

@description('ZTS_EMAIL_RECIPIENTS: comma-separated alert recipients (empty: no email).')
param emailRecipients string

@description('ZTS_ALERT_CONFIG: alert routing file deployed with the app (path in the package); empty: findings are only logged.')
param alertConfigPath string = ''

@description('ZTS_ANALYTICS_CONFIG: analytics configuration deployed with the app (risky countries, threat lists, allowed subscription pairs); empty: defaults.')
param analyticsConfigPath string = ''

@description('Key Vault URI (https://<name>.vault.azure.net/).')
param keyVaultUri string

@description('Name of the Key Vault secret holding the Teams webhook URL.')
param teamsWebhookSecretName string

@description('Whether the Teams webhook secret exists in the vault (ZTS_TEAMS_WEBHOOK_URL is then a Key Vault reference; otherwise empty).')
param teamsWebhookConfigured bool

var storageSuffix = environment().suffixes.storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (default would be system-assigned).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Functions host storage, identity-based. The nsg-reconcile queue triggers use this same
      // connection (connection="AzureWebJobsStorage"): accountName covers blobs and queues.
      AzureWebJobsStorage__accountName: storage.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      // Telemetry with Microsoft Entra authentication.
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // DefaultAzureCredential picks the user-assigned identity.
      AZURE_CLIENT_ID: identityClientId
      // zts settings.
      ZTS_DISCOVERY_SCHEDULE: discoverySchedule
      ZTS_ANALYTICS_SCHEDULE: analyticsSchedule
      ZTS_STORAGE_TABLE_ENDPOINT: 'https://${storage.name}.table.${storageSuffix}'
      ZTS_STORAGE_QUEUE_ENDPOINT: 'https://${storage.name}.queue.${storageSuffix}'
      ZTS_TABLE_PREFIX: tablePrefix
      ZTS_SUBSCRIPTIONS: subscriptionsCsv
      ZTS_MANAGEMENT_GROUP: managementGroupId
      ZTS_POLICY_PATH: policyPath
      ZTS_ENFORCEMENT_ENABLED: enforcementEnabled ? 'true' : 'false'
      ZTS_LA_WORKSPACE_ID: trafficAnalyticsWorkspaceCustomerId
      ZTS_ADX_CLUSTER_URI: adxClusterUri
      ZTS_ADX_DATABASE: adxDatabase
      ZTS_ADX_FLOW_TABLE: adxFlowTable
      ZTS_ADX_IP_TABLE: adxIpTable
      ZTS_ACS_ENDPOINT: acsEndpoint
      ZTS_EMAIL_SENDER: emailSender
      ZTS_EMAIL_RECIPIENTS: emailRecipients
      ZTS_ALERT_CONFIG: alertConfigPath
      ZTS_ANALYTICS_CONFIG: analyticsConfigPath
      ZTS_TEAMS_WEBHOOK_URL: teamsWebhookConfigured ? '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${teamsWebhookSecretName})' : ''
    }
  }
}

output id string = functionApp.id
output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
