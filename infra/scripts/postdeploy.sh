#!/bin/sh
# azd postdeploy hook: create the Event Grid subscriptions once the resource_events function
# exists. The first `azd up` provisions with ZTS_EVENTS_ENABLED unset (false), deploys the code,
# then this hook sets ZTS_EVENTS_ENABLED=true and provisions again. Later runs do nothing.
# Opt out with `azd env set ZTS_SKIP_EVENT_SUBSCRIPTIONS true` (periodic discovery only).
set -eu

if [ "${ZTS_SKIP_EVENT_SUBSCRIPTIONS:-false}" = "true" ]; then
  echo "zts: ZTS_SKIP_EVENT_SUBSCRIPTIONS=true; no Event Grid subscriptions (periodic discovery only)."
  exit 0
fi
if [ "${ZTS_EVENTS_ENABLED:-false}" = "true" ]; then
  echo "zts: Event Grid subscriptions are enabled; nothing to do."
  exit 0
fi

echo "zts: the resource_events function is deployed; creating the Event Grid subscriptions."
azd env set ZTS_EVENTS_ENABLED true

attempt=1
while [ "$attempt" -le 3 ]; do
  # The function can take a moment to be indexed after the deploy; Event Grid validates it exists.
  if azd provision --no-prompt; then
    echo "zts: Event Grid subscriptions created."
    exit 0
  fi
  if [ "$attempt" -lt 3 ]; then
    echo "zts: provisioning with events failed (attempt $attempt of 3); retrying in 60 s." >&2
    sleep 60
  fi
  attempt=$((attempt + 1))
done

echo "zts: could not create the Event Grid subscriptions. ZTS_EVENTS_ENABLED stays true:" >&2
echo "     fix the error above, then run: azd provision" >&2
exit 1
