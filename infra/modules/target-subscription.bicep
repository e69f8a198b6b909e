// Everything zts needs in one target subscription (deployed once per subscription with
// scope: subscription(id)): Reader for discovery (unless a management group grant covers it),
// Network Contributor for enforcement (only when enforcement is on and not narrowed to resource
// groups), and a resource group holding the Event Grid system topic for the subscription's
// resource events.

targetScope = 'subscription'

import { roleDefinitionIds } from 'roles.bicep'

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param principalId string

@description('Grant Reader on this subscription (false when Reader comes from a management group).')
param readerAtSubscription bool

@description('Whether zts may write NSGs at all.')
param enforcementEnabled bool

@description('True when Network Contributor is granted on listed resource groups instead of subscriptions.')
param enforcementScopedToResourceGroups bool

@description('Resource group created in this subscription for the Event Grid system topic.')
param eventsResourceGroupName string

@description('Name of the Event Grid system topic for this subscription.')
param systemTopicName string

@description('Region of the events resource group (the system topic itself is global).')
param location string

@description('Tags applied to the resource group and the topic.')
param tags object = {}

resource readerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (readerAtSubscription) {
  name: guid(subscription().id, principalId, roleDefinitionIds.reader)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'zts: discovery (Resource Graph and ARM reads)'
  }
}

resource networkContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enforcementEnabled && !enforcementScopedToResourceGroups) {
  name: guid(subscription().id, principalId, roleDefinitionIds.networkContributor)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.networkContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'zts: enforcement (NSG writes); narrow it with enforcementResourceGroupIds'
  }
}

resource eventsResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: eventsResourceGroupName
  location: location
  tags: tags
}

module topic 'event-topic.bicep' = {
  name: 'zts-event-topic'
  scope: eventsResourceGroup
  params: {
    name: systemTopicName
    tags: tags
  }
}

output resourceGroupName string = eventsResourceGroup.name
output systemTopicName string = topic.outputs.name
output systemTopicPrincipalId string = topic.outputs.principalId
