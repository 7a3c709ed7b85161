#!/usr/bin/env bash
# enroll.sh: a DPS enrollment (individual, or a group) with symmetric-key attestation and custom allocation through
# the validatejwt webhook, then prints what the device needs to run `sample-device register`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

API_VERSION=2021-10-01
LISTKEYS_API_VERSION=2024-04-01
FUNCTION_NAME=validatejwt
GLOBAL_HOST=global.azure-devices-provisioning.net

usage() {
  cat <<'EOF'
Usage: enroll.sh -g RG --dps NAME --app NAME (--registration-id ID | --group-id ID [--registration-id ID])
                 [--hubs HUB[,HUB...]] [--device-id ID] [--private-key FILE] [--transport http|mqtt]
                 [--update] [--show-keys] [--dry-run]

Creates, with the azure-iot extension:
  individual: az iot dps enrollment create --enrollment-id ID --attestation-type symmetrickey ...
  group:      az iot dps enrollment-group create --enrollment-id GROUP ...   (symmetric key is implied)
each with --allocation-policy custom --api-version 2021-10-01 --iot-hubs <linked hubs> and
--webhook-url @FILE, a 0600 temporary file holding https://<app host>/api/validatejwt?code=<function key>
(az reads it; the key never appears on a command line; the file is removed on exit, Ctrl-C or SIGTERM).
The function key comes from az functionapp function keys list --function-name validatejwt, or when that answers
nothing (az 2.87.x) from az rest --method post --uri <app id>/functions/validatejwt/listkeys, retried while the
host is still indexing a fresh publish.

Options:
  -g, --resource-group RG  resource group of the DPS and the function app (default: $DPSJWT_RESOURCE_GROUP)
  --dps NAME               the DPS (default: $DPSJWT_DPS)
  --app NAME               the function app hosting validatejwt (default: $DPSJWT_APP)
  --registration-id ID     individual enrollment for this device; with --group-id, only the device the printed
                           command is for
  --group-id ID            an enrollment group (every device derives its key from the group key)
  --hubs LIST              hubs the enrollment may assign (names or host names, comma-separated;
                           default: every hub linked to the DPS)
  --device-id ID           individual only: the IoT Hub device id, when it is not the registration id
  --private-key FILE       the device's private key, for the printed command (default: ID.key.pem)
  --transport http|mqtt    for the printed command (default: mqtt)
  --update                 the enrollment exists: re-apply webhook URL and hubs when they differ (after a function
                           key rotation)
  --show-keys              print the device's symmetric key (for a group device: the key derived from the group
                           key); otherwise the printed command reads it into DEVICE_SYMMETRIC_KEY itself
  --dry-run                print the commands, run none
  -h, --help               this text

An existing enrollment is left as it is (unless --update).
EOF
}

RG=${DPSJWT_RESOURCE_GROUP:-}
DPS=${DPSJWT_DPS:-}
APP=${DPSJWT_APP:-}
REGISTRATION_ID=''
GROUP_ID=''
HUBS_ARG=''
DEVICE_ID=''
PRIVATE_KEY=''
TRANSPORT=mqtt
UPDATE=0
SHOW_KEYS=0
while [[ $# -gt 0 ]]; do
  case $1 in
    -g | --resource-group) RG=$(opt_value "$@"); shift 2 ;;
    --dps) DPS=$(opt_value "$@"); shift 2 ;;
    --app) APP=$(opt_value "$@"); shift 2 ;;
    --registration-id) REGISTRATION_ID=$(opt_value "$@"); shift 2 ;;
    --group-id) GROUP_ID=$(opt_value "$@"); shift 2 ;;
    --hubs) HUBS_ARG=$(opt_value "$@"); shift 2 ;;
    --device-id) DEVICE_ID=$(opt_value "$@"); shift 2 ;;
    --private-key) PRIVATE_KEY=$(opt_value "$@"); shift 2 ;;
    --transport) TRANSPORT=$(opt_value "$@"); shift 2 ;;
    --update) UPDATE=1; shift ;;
    --show-keys) SHOW_KEYS=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

require --resource-group "$RG"
check_resource_group --resource-group "$RG"
require --dps "$DPS"
check_dps_name --dps "$DPS"
require --app "$APP"
check_app_name --app "$APP"
if [[ -z $REGISTRATION_ID && -z $GROUP_ID ]]; then usage_error "missing --registration-id (or --group-id)"; fi
if [[ -n $REGISTRATION_ID ]]; then check_registration_id --registration-id "$REGISTRATION_ID"; fi
if [[ -n $GROUP_ID ]]; then check_registration_id --group-id "$GROUP_ID"; fi
if [[ -n $DEVICE_ID && -n $GROUP_ID ]]; then usage_error "--device-id is for individual enrollments (a group's devices use their registration id)"; fi
if [[ -n $DEVICE_ID ]]; then check_match --device-id "$DEVICE_ID" '^[A-Za-z0-9._:%@*+=$!,;()'"'"'-]{1,128}$' 'up to 128 letters, digits and - . _ : % @ * + = $ ! , ; ( ) '"'"; fi
case $TRANSPORT in http | mqtt) ;; *) usage_error "--transport must be http or mqtt, got '$TRANSPORT'" ;; esac

if [[ -n $GROUP_ID ]]; then
  KIND=enrollment-group
  ENROLLMENT_ID=$GROUP_ID
  WHAT="enrollment group $GROUP_ID"
else
  KIND=enrollment
  ENROLLMENT_ID=$REGISTRATION_ID
  WHAT="individual enrollment $REGISTRATION_ID"
fi

ensure_iot_extension

# What DPS must know: its id scope, the hubs, and the webhook URL with the function key (a secret).
ID_SCOPE=''
call --into ID_SCOPE --placeholder '<id-scope>' -- az iot dps show -n "$DPS" -g "$RG" --query properties.idScope -o tsv
HUBS=()
if [[ -n $HUBS_ARG ]]; then
  IFS=',' read -r -a names <<<"$HUBS_ARG"
  for name in "${names[@]}"; do
    check_hub_name --hubs "$(hub_name "$name")"
    HUBS+=("$(hub_host "$name")")
  done
else
  linked=''
  call --into linked --placeholder '<hub>.azure-devices.net' -- \
    az iot dps linked-hub list --dps-name "$DPS" -g "$RG" --query '[].name' -o tsv
  while IFS= read -r host; do if [[ -n $host ]]; then HUBS+=("$host"); fi; done <<<"$linked"
  if [[ ${#HUBS[@]} -eq 0 ]]; then fail "DPS $DPS has no linked IoT hub; run deploy.sh (az iot dps linked-hub create)"; fi
fi

# A multi-select list prints one value per line with -o tsv (facts §2.1).
APP_ROW=''
call --into APP_ROW --placeholder "$APP.azurewebsites.net"$'\n''<function-app-id>' -- \
  az functionapp show -g "$RG" -n "$APP" --query '[defaultHostName, id]' -o tsv
APP_HOST='' APP_ID=''
{ IFS= read -r APP_HOST || true; IFS= read -r APP_ID || true; } <<<"$APP_ROW"

# The function key. az 2.87.x answers `function keys list` with nulls (facts §2.3.5): fall back to the ARM listkeys
# POST. Right after a first publish the host may not have indexed the function yet (404): retry, a bounded number
# of times. The key only ever reaches this script through a command's stdout.
FUNCTION_KEY=''
tries=${DPSJWT_KEY_TRIES:-6}
for ((try = 1; try <= tries; try++)); do
  rc=0
  call --into FUNCTION_KEY --secret --placeholder '<function-key>' --missing-ok -- \
    az functionapp function keys list -g "$RG" -n "$APP" --function-name "$FUNCTION_NAME" --query default -o tsv || rc=$?
  if [[ $rc == 0 && -n $FUNCTION_KEY ]]; then break; fi
  rc=0
  call --into FUNCTION_KEY --secret --placeholder '<function-key>' --missing-ok -- \
    az rest --method post --uri "$APP_ID/functions/$FUNCTION_NAME/listkeys?api-version=$LISTKEYS_API_VERSION" --query default -o tsv || rc=$?
  if [[ $rc == 0 && -n $FUNCTION_KEY ]]; then break; fi
  FUNCTION_KEY=''
  if ((try < tries)); then
    note "no function key yet for $FUNCTION_NAME (the host may still be indexing it after a publish); retrying ($try/$tries)"
    sleep "${DPSJWT_KEY_WAIT_SECONDS:-10}"
  fi
done
if [[ -z $FUNCTION_KEY ]]; then
  fail "no function key for $FUNCTION_NAME in function app $APP: is the code published (deploy.sh)? Without the key in the webhook URL DPS gets 401 and the device sees 400209 CustomAllocationUnauthorizedAccess"
fi
WEBHOOK_URL="https://$APP_HOST/api/$FUNCTION_NAME?code=$FUNCTION_KEY"
add_secret "$WEBHOOK_URL"

# The URL goes to az as @file (az reads the file, facts §2.1): the function key never appears in any argv. The file
# is 0600 in the private temporary directory, removed on exit, Ctrl-C or SIGTERM.
if [[ $DRY_RUN == 1 ]]; then
  URL_ARG='@<webhook-url-file>'
  note "# <webhook-url-file>: a 0600 temporary file holding https://$APP_HOST/api/$FUNCTION_NAME?code=***"
else
  url_file=''
  new_temp_file url_file webhook-url
  printf '%s\n' "$WEBHOOK_URL" >"$url_file"
  # az passes an unreadable @file on as the literal text: make sure it reads back.
  if [[ ! -r $url_file || $(<"$url_file") != "$WEBHOOK_URL" ]]; then fail "cannot write the webhook URL to $url_file"; fi
  URL_ARG="@$url_file"
fi

SORTED_HUBS=$(printf '%s\n' "${HUBS[@]}" | LC_ALL=C sort | tr '\n' ' ')
SORTED_HUBS=${SORTED_HUBS% }
current=''
# shellcheck disable=SC2016 # JMESPath literals, not shell expansions
if az_exists current -- az iot dps "$KIND" show --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID" \
  --query '[allocationPolicy, customAllocationDefinition.webhookUrl, customAllocationDefinition.apiVersion, join(`" "`, sort(iotHubs || `[]`))]' -o tsv; then
  # The stored URL holds the key: never printed.
  add_secret "$current"
  mapfile -t fields <<<"$current"
  add_secret "${fields[1]:-}"
  policy=${fields[0]:-}
  have="${policy,,}|${fields[1]:-}|${fields[2]:-}|${fields[3]:-}"
  want="custom|$WEBHOOK_URL|$API_VERSION|$SORTED_HUBS"
  if [[ $UPDATE == 1 && $have != "$want" ]]; then
    call -- az iot dps "$KIND" update --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID" \
      --allocation-policy custom --webhook-url "$URL_ARG" --api-version "$API_VERSION" --iot-hubs "${HUBS[@]}" -o none
    note "$WHAT: updated (webhook URL and hubs)"
  elif [[ $UPDATE == 1 ]]; then
    note "$WHAT: webhook URL, api-version and hubs are up to date; nothing changed"
  else
    note "$WHAT already exists in $DPS (allocation policy: ${fields[0]:-}); left unchanged (pass --update to re-apply webhook URL and hubs)"
  fi
else
  args=(az iot dps "$KIND" create --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID")
  # Groups take no --attestation-type (symmetric key is implied without certificates, facts §2.3.2).
  if [[ -z $GROUP_ID ]]; then args+=(--attestation-type symmetrickey); fi
  args+=(--allocation-policy custom --webhook-url "$URL_ARG" --api-version "$API_VERSION" --iot-hubs "${HUBS[@]}")
  if [[ -n $DEVICE_ID ]]; then args+=(--device-id "$DEVICE_ID"); fi
  args+=(-o none)
  call -- "${args[@]}"
fi

# The device's symmetric key: the enrollment's own, or for a group device the key DPS derives from the group key
# (compute-device-key, so the group key itself never goes to a device).
DEVICE_RID=${REGISTRATION_ID:-<registration-id>}
if [[ -n $GROUP_ID ]]; then
  KEY_CMD=(az iot dps enrollment-group compute-device-key --dps-name "$DPS" -g "$RG" --enrollment-id "$GROUP_ID"
    --registration-id "$DEVICE_RID" -o tsv)
else
  KEY_CMD=(az iot dps enrollment show --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID" --show-keys
    --query attestation.symmetricKey.primaryKey -o tsv)
fi
KEY=''
if [[ $SHOW_KEYS == 1 && ( -z $GROUP_ID || -n $REGISTRATION_ID ) ]]; then
  call --into KEY --secret --placeholder '<symmetric-key>' -- "${KEY_CMD[@]}"
fi

PRIVATE_KEY=${PRIVATE_KEY:-$DEVICE_RID.key.pem}
if [[ $DRY_RUN == 1 ]]; then exit 0; fi

say ""
say "$WHAT in DPS $DPS: symmetric key attestation, custom allocation by $FUNCTION_NAME"
say "  webhook: https://$APP_HOST/api/$FUNCTION_NAME?code=*** (api-version $API_VERSION)"
say "  hubs:    ${HUBS[*]}"
say "  id scope: $ID_SCOPE"
say ""
say "The device needs its public key in Key Vault first (register-key.sh --registration-id $DEVICE_RID ...)."
say "Then, from the repository after npm run build, run the device. Its symmetric key goes in the environment"
say "(DEVICE_SYMMETRIC_KEY), never on a command line, where other users of the machine could read it:"
if [[ -n $KEY ]]; then
  # Asked for (--show-keys): the one place a secret is printed on purpose, alone on its line.
  say "  read -rs DEVICE_SYMMETRIC_KEY && export DEVICE_SYMMETRIC_KEY    # paste this key, then Enter:"
  printf '  %s\n' "$KEY"
else
  say "  export DEVICE_SYMMETRIC_KEY=\"\$($(quote_cmd "${KEY_CMD[@]}"))\""
fi
say "  node dist/sample-device/cli.js register --registration-id $(quote_cmd "$DEVICE_RID") --id-scope $ID_SCOPE --host $GLOBAL_HOST --private-key $(quote_cmd "$PRIVATE_KEY") --transport $TRANSPORT"
if [[ -z $KEY ]]; then say "(enroll.sh --show-keys prints the key instead.)"; fi
