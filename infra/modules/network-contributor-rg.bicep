// Network Contributor for the zts identity on one resource group that holds NSGs zts manages
// (the narrow alternative to subscription-wide Network Contributor). Only with enforcement on.

import { roleDefinitionIds } from 'roles.bicep'

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param principalId string

@description('Whether zts may write NSGs at all.')
param enforcementEnabled bool

resource networkContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enforcementEnabled) {
  name: guid(resourceGroup().id, principalId, roleDefinitionIds.networkContributor)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.networkContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'zts: enforcement (NSG writes) in this resource group'
  }
}
