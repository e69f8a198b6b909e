// Lets one Event Grid system topic's identity write dead letters: Storage Blob Data Contributor
// on the dead-letter container only (deployed in the app's resource group).

import { roleDefinitionIds } from 'roles.bicep'

@description('Principal id of the system topic\'s system-assigned identity.')
param principalId string

@description('The zts storage account.')
param storageAccountName string

@description('Blob container receiving dead letters.')
param deadLetterContainerName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource deadLetterContainer 'containers' existing = {
      name: deadLetterContainerName
    }
  }
}

resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::deadLetterContainer.id, principalId, roleDefinitionIds.storageBlobDataContributor)
  scope: storage::blobService::deadLetterContainer
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'zts: Event Grid system topic writes dead letters (this container only)'
  }
}
