// A subscription-scope deployment cannot target a management group directly (the only
// prohibited scope transitions are resource group or subscription -> management group), so
// main.bicep reaches it through the tenant. This needs the deployer to be allowed to create
// tenant-scope deployments (Microsoft.Resources/deployments/* at "/"); without that, deploy
// management-group-reader.bicep on its own with `az deployment mg create` (docs/deploy.md).

targetScope = 'tenant'

@description('Management group id (not display name).')
param managementGroupId string

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param principalId string

module readerAtManagementGroup 'management-group-reader.bicep' = {
  name: 'zts-mg-reader-${uniqueString(managementGroupId, principalId)}'
  scope: managementGroup(managementGroupId)
  params: {
    principalId: principalId
  }
}
