// Reader for the zts identity on a management group: discovery across every subscription below
// it. Deployable on its own (az deployment mg create, see docs/deploy.md) or from main.bicep
// through management-group-hop.bicep when the deployer may create tenant-scope deployments.

targetScope = 'managementGroup'

import { roleDefinitionIds } from 'roles.bicep'

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param principalId string

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, roleDefinitionIds.reader)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'zts: discovery across the management group (Resource Graph)'
  }
}
