# azd postdeploy hook (Windows): same as postdeploy.sh. Create the Event Grid subscriptions once
# the resource_events function exists: set ZTS_EVENTS_ENABLED=true and provision again.
# Opt out with `azd env set ZTS_SKIP_EVENT_SUBSCRIPTIONS true` (periodic discovery only).
$ErrorActionPreference = 'Stop'

if ($env:ZTS_SKIP_EVENT_SUBSCRIPTIONS -eq 'true') {
    Write-Host 'zts: ZTS_SKIP_EVENT_SUBSCRIPTIONS=true; no Event Grid subscriptions (periodic discovery only).'
    exit 0
}
if ($env:ZTS_EVENTS_ENABLED -eq 'true') {
    Write-Host 'zts: Event Grid subscriptions are enabled; nothing to do.'
    exit 0
}

Write-Host 'zts: the resource_events function is deployed; creating the Event Grid subscriptions.'
azd env set ZTS_EVENTS_ENABLED true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }

for ($attempt = 1; $attempt -le 3; $attempt++) {
    azd provision --no-prompt
    if ($LASTEXITCODE -eq 0) {
        Write-Host 'zts: Event Grid subscriptions created.'
        exit 0
    }
    if ($attempt -lt 3) {
        Write-Warning "zts: provisioning with events failed (attempt $attempt of 3); retrying in 60 s."
        Start-Sleep -Seconds 60
    }
}

Write-Error 'zts: could not create the Event Grid subscriptions. ZTS_EVENTS_ENABLED stays true: fix the error above, then run: azd provision'
exit 1
