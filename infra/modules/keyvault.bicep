// Key Vault for the one secret zts has: the Teams Workflows webhook URL (it embeds a SAS
// signature). RBAC authorization only (no access policies), purge protection on.

@description('Key Vault name (3-24 characters).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Name of the secret holding the Teams webhook URL.')
param teamsWebhookSecretName string

@description('The Teams Workflows webhook URL. Empty: no secret is written by this deployment.')
@secure()
param teamsWebhookUrl string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Written through the control plane (ARM), so the deployer needs no data-plane role for it.
resource teamsWebhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(teamsWebhookUrl)) {
  parent: vault
  name: teamsWebhookSecretName
  properties: {
    value: teamsWebhookUrl
    contentType: 'text/uri'
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
