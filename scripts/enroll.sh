#!/usr/bin/env bash
# enroll.sh: a DPS enrollment (individual, or a group) with symmetric-key attestation and custom allocation through
# the validatejwt webhook, then prints what the device needs to run `sample-device register`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

API_VERSION=2021-10-01
FUNCTION_NAME=validatejwt
GLOBAL_HOST=global.azure-devices-provisioning.net

usage() {
  cat <<'EOF'
Usage: enroll.sh -g RG --dps NAME --app NAME (--registration-id ID | --group-id ID [--registration-id ID])
                 [--hubs HUB[,HUB...]] [--device-id ID] [--private-key FILE] [--transport http|mqtt]
                 [--update] [--show-keys] [--dry-run]

Creates, with the azure-iot extension:
  individual: az iot dps enrollment create --enrollment-id ID ...
  group:      az iot dps enrollment-group create --enrollment-id GROUP ...
each with --attestation-type symmetrickey --allocation-policy custom --api-version 2021-10-01
--webhook-url https://<app host>/api/validatejwt?code=<function key> --iot-hubs <linked hubs>.
The function key comes from: az functionapp function keys list --function-name validatejwt --query default.

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
  --update                 the enrollment exists: re-apply webhook URL and hubs (after a function key rotation)
  --show-keys              print the symmetric (or group) key; otherwise it is shown as ***
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

APP_HOST=''
call --into APP_HOST --placeholder "$APP.azurewebsites.net" -- \
  az functionapp show -g "$RG" -n "$APP" --query defaultHostName -o tsv
FUNCTION_KEY=''
rc=0
call --into FUNCTION_KEY --secret --placeholder '<function-key>' --missing-ok -- \
  az functionapp function keys list -g "$RG" -n "$APP" --function-name "$FUNCTION_NAME" --query default -o tsv || rc=$?
if [[ $rc == 3 || -z $FUNCTION_KEY ]]; then
  fail "no function key for $FUNCTION_NAME in function app $APP: is the code published (deploy.sh)? Without the key in the webhook URL DPS gets 401 and the device sees 400209 CustomAllocationUnauthorizedAccess"
fi
WEBHOOK_URL="https://$APP_HOST/api/$FUNCTION_NAME?code=$FUNCTION_KEY"

exists=''
if az_exists exists -- az iot dps "$KIND" show --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID" --query allocationPolicy -o tsv; then
  if [[ $UPDATE == 1 ]]; then
    call -- az iot dps "$KIND" update --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID" \
      --allocation-policy custom --webhook-url "$WEBHOOK_URL" --api-version "$API_VERSION" --iot-hubs "${HUBS[@]}" -o none
    note "$WHAT: updated (webhook URL and hubs)"
  else
    note "$WHAT already exists in $DPS (allocation policy: $exists); left unchanged (pass --update to re-apply webhook URL and hubs)"
  fi
else
  args=(az iot dps "$KIND" create --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID"
    --attestation-type symmetrickey --allocation-policy custom --webhook-url "$WEBHOOK_URL" --api-version "$API_VERSION"
    --iot-hubs "${HUBS[@]}")
  if [[ -n $DEVICE_ID ]]; then args+=(--device-id "$DEVICE_ID"); fi
  args+=(-o none)
  call -- "${args[@]}"
fi

KEY_FLAG=--symmetric-key
if [[ -n $GROUP_ID ]]; then KEY_FLAG=--group-key; fi
SHOW_KEY_CMD=(az iot dps "$KIND" show --dps-name "$DPS" -g "$RG" --enrollment-id "$ENROLLMENT_ID" --show-keys
  --query attestation.symmetricKey.primaryKey -o tsv)
KEY='***'
if [[ $SHOW_KEYS == 1 ]]; then
  call --into KEY --secret --placeholder '<primary-key>' -- "${SHOW_KEY_CMD[@]}"
fi

DEVICE_RID=${REGISTRATION_ID:-<registration-id>}
PRIVATE_KEY=${PRIVATE_KEY:-$DEVICE_RID.key.pem}
if [[ $DRY_RUN == 1 ]]; then exit 0; fi

say ""
say "$WHAT in DPS $DPS: symmetric key attestation, custom allocation by $FUNCTION_NAME"
say "  webhook: $WEBHOOK_URL (api-version $API_VERSION)"
say "  hubs:    ${HUBS[*]}"
say "  id scope: $ID_SCOPE"
say ""
say "The device needs its public key in Key Vault first (register-key.sh --registration-id $DEVICE_RID ...)."
say "Then, from the repository after npm run build, run the device:"
device_cmd="node dist/sample-device/cli.js register --registration-id $(quote_cmd "$DEVICE_RID") --id-scope $ID_SCOPE --host $GLOBAL_HOST $KEY_FLAG $KEY --private-key $(quote_cmd "$PRIVATE_KEY") --transport $TRANSPORT"
if [[ $SHOW_KEYS == 1 ]]; then
  # Asked for: the one place a secret is printed on purpose.
  printf '  %s\n' "$device_cmd"
else
  say "  $device_cmd"
  say "The key ($KEY_FLAG) is a secret and is not printed; read it with:"
  say "  $(quote_cmd "${SHOW_KEY_CMD[@]}")"
  say "or run enroll.sh again with --show-keys."
fi
