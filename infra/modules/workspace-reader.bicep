// Log Analytics Reader for the zts identity on the existing Traffic Analytics workspace (which may
// live in another subscription), and the workspace (customer) id the query API needs.

import { roleDefinitionIds } from 'roles.bicep'

@description('Name of the existing Traffic Analytics Log Analytics workspace (in this resource group).')
param workspaceName string

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param principalId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource workspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roleDefinitionIds.logAnalyticsReader)
  scope: workspace
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.logAnalyticsReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'zts: query Traffic Analytics (NTANetAnalytics, NTAIpDetails)'
  }
}

output customerId string = workspace.properties.customerId
