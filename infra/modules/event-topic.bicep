// The Event Grid system topic of one Azure subscription (topic type
// Microsoft.Resources.Subscriptions: ARM write/delete/action events for every resource in it).
// Its system-assigned identity writes dead letters to the zts storage account.

@description('Name of the system topic.')
param name string

@description('Tags applied to the topic.')
param tags object = {}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

output name string = systemTopic.name
output principalId string = systemTopic.identity.principalId
