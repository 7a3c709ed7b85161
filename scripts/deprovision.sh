#!/usr/bin/env bash
# deprovision.sh: the reverse of enroll.sh and register-key.sh. Deletes the enrollment (or a group device's
# registration record), the device identity in its hub, and the key secret. What is already gone is success.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: deprovision.sh -g RG --dps NAME --vault NAME --registration-id ID [--group-id ID]
                      [--device-id ID] [--hub NAME] [--purge] [--keep-key] [--dry-run]
       deprovision.sh -g RG --dps NAME --vault NAME --group-id ID        (a whole enrollment group)

An individual device, in this order (so it cannot register again half-way):
  1. az iot dps enrollment delete --enrollment-id ID, az iot dps enrollment registration delete --enrollment-id ID
  2. az iot hub device-identity delete --hub-name HUB --device-id ID   (the hub DPS assigned; else every linked hub)
  3. az keyvault secret delete --vault-name NAME --name device-<id>     (then az keyvault secret purge with --purge)
A device of an enrollment group (--registration-id ID --group-id GROUP) is kept out, not forgotten: deleting its
registration record alone would let it register again through the group, and deleting its own key would let the
webhook fall back to the group key. So:
  1. az iot dps enrollment create --enrollment-id ID --attestation-type symmetrickey --provisioning-status disabled
     (an individual enrollment takes precedence over the group: DPS refuses the device)
  2. az iot dps enrollment-group registration delete --registration-id ID
  3. az iot hub device-identity delete ...
  4. az keyvault secret set-attributes --name device-<id> --enabled false   (disabled, not deleted: the webhook
     answers device_key_disabled and does not fall back to the group key)
A group (--group-id without --registration-id): az iot dps enrollment-group delete, and the group-<id> secret.

Options:
  -g, --resource-group RG  resource group of the DPS and the hubs (default: $DPSJWT_RESOURCE_GROUP)
  --dps NAME               the DPS (default: $DPSJWT_DPS)
  --vault NAME             the Key Vault (default: $DPSJWT_VAULT)
  --registration-id ID     the device
  --group-id ID            the device registered through this enrollment group (or, alone, the group itself)
  --device-id ID           the hub device id (default: from the DPS registration record, else the registration id)
  --hub NAME               the device's hub (default: from the DPS registration record, else every linked hub)
  --purge                  purge the deleted secret too (Key Vault soft delete keeps it 7-90 days otherwise;
                           impossible when the vault has purge protection); not for a group device, whose key is
                           disabled, never deleted
  --keep-key               leave the key secret in Key Vault
  --dry-run                print the commands, run none
  -h, --help               this text

Not found is success for every step; any other error stops with exit 1.
EOF
}

RG=${DPSJWT_RESOURCE_GROUP:-}
DPS=${DPSJWT_DPS:-}
VAULT=${DPSJWT_VAULT:-}
REGISTRATION_ID=''
GROUP_ID=''
DEVICE_ID=''
HUB=''
PURGE=0
KEEP_KEY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    -g | --resource-group) RG=$(opt_value "$@"); shift 2 ;;
    --dps) DPS=$(opt_value "$@"); shift 2 ;;
    --vault) VAULT=$(opt_value "$@"); shift 2 ;;
    --registration-id) REGISTRATION_ID=$(opt_value "$@"); shift 2 ;;
    --group-id) GROUP_ID=$(opt_value "$@"); shift 2 ;;
    --device-id) DEVICE_ID=$(opt_value "$@"); shift 2 ;;
    --hub) HUB=$(opt_value "$@"); shift 2 ;;
    --purge) PURGE=1; shift ;;
    --keep-key) KEEP_KEY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

require --resource-group "$RG"
check_resource_group --resource-group "$RG"
require --dps "$DPS"
check_dps_name --dps "$DPS"
if [[ $KEEP_KEY != 1 ]]; then
  require --vault "$VAULT"
  check_vault_name --vault "$VAULT"
fi
if [[ -z $REGISTRATION_ID && -z $GROUP_ID ]]; then usage_error "missing --registration-id (or --group-id)"; fi
if [[ -n $REGISTRATION_ID ]]; then check_registration_id --registration-id "$REGISTRATION_ID"; fi
if [[ -n $GROUP_ID ]]; then check_registration_id --group-id "$GROUP_ID"; fi
if [[ -n $HUB ]]; then check_hub_name --hub "$(hub_name "$HUB")"; fi
if [[ $PURGE == 1 && $KEEP_KEY == 1 ]]; then usage_error "--purge and --keep-key contradict each other"; fi
if [[ $PURGE == 1 && -n $REGISTRATION_ID && -n $GROUP_ID ]]; then
  usage_error "--purge: a group device's key is disabled, not deleted (a deleted device key lets the webhook fall back to the group key)"
fi

# delete_secret NAME: delete, and with --purge wait for the soft delete to land, then purge.
delete_secret() {
  local name=$1
  az_delete "key secret $name" -- az keyvault secret delete --vault-name "$VAULT" --name "$name" -o none
  if [[ $PURGE != 1 ]]; then return 0; fi
  if [[ $DRY_RUN != 1 ]]; then
    # Soft delete completes asynchronously; purge only works once the secret is listed as deleted. list-deleted, not
    # show-deleted, which Key Vault refuses for a secret deleted while disabled (facts §3).
    local listed=1
    for _ in $(seq 1 "${DPSJWT_PURGE_WAIT_TRIES:-15}"); do
      if secret_deleted "$VAULT" "$name"; then listed=0; break; fi
      sleep "${DPSJWT_PURGE_WAIT_SECONDS:-2}"
    done
    if [[ $listed != 0 ]]; then note "key secret $name: not in the vault's deleted secrets; nothing to purge"; return 0; fi
  fi
  az_delete "deleted key secret $name" -- az keyvault secret purge --vault-name "$VAULT" --name "$name" -o none
}

ensure_iot_extension

if [[ -z $REGISTRATION_ID ]]; then
  # The whole group.
  az_delete "enrollment group $GROUP_ID" -- az iot dps enrollment-group delete --dps-name "$DPS" -g "$RG" --enrollment-id "$GROUP_ID" -o none
  if [[ $KEEP_KEY != 1 ]]; then delete_secret "$(group_secret_name "$GROUP_ID")"; fi
  note "group devices keep their hub identities; deprovision each with --registration-id ID --group-id $GROUP_ID"
  exit 0
fi

# Where DPS put the device (read before the records are deleted). The individual record is addressed by
# --enrollment-id, a group device's by --registration-id (facts §2.3.1).
if [[ -n $GROUP_ID ]]; then
  REG=(az iot dps enrollment-group registration show --dps-name "$DPS" -g "$RG" --registration-id "$REGISTRATION_ID")
else
  REG=(az iot dps enrollment registration show --dps-name "$DPS" -g "$RG" --enrollment-id "$REGISTRATION_ID")
fi
assigned=''
record=unknown
if [[ -z $HUB || -z $DEVICE_ID ]]; then
  if az_exists assigned -- "${REG[@]}" --query '[assignedHub, deviceId]' -o tsv; then record=found; else assigned='' record=absent; fi
fi
assigned_hub='' assigned_device=''
{ IFS= read -r assigned_hub || true; IFS= read -r assigned_device || true; } <<<"$assigned"
DEVICE_ID=${DEVICE_ID:-${assigned_device:-$REGISTRATION_ID}}

# 1. DPS: the device cannot register again.
if [[ -n $GROUP_ID ]]; then
  status=''
  if az_exists status -- az iot dps enrollment show --dps-name "$DPS" -g "$RG" --enrollment-id "$REGISTRATION_ID" --query provisioningStatus -o tsv; then
    if [[ ${status,,} == disabled ]]; then
      note "individual enrollment $REGISTRATION_ID: exists, disabled (keeps the device out of group $GROUP_ID)"
    else
      call -- az iot dps enrollment update --dps-name "$DPS" -g "$RG" --enrollment-id "$REGISTRATION_ID" --provisioning-status disabled -o none
    fi
  else
    call -- az iot dps enrollment create --dps-name "$DPS" -g "$RG" --enrollment-id "$REGISTRATION_ID" \
      --attestation-type symmetrickey --provisioning-status disabled -o none
  fi
  if [[ $record == absent && $DRY_RUN != 1 ]]; then
    note "registration record $REGISTRATION_ID: already gone"
  else
    az_delete "registration record $REGISTRATION_ID" -- az iot dps enrollment-group registration delete --dps-name "$DPS" -g "$RG" --registration-id "$REGISTRATION_ID" -o none
  fi
else
  az_delete "individual enrollment $REGISTRATION_ID" -- az iot dps enrollment delete --dps-name "$DPS" -g "$RG" --enrollment-id "$REGISTRATION_ID" -o none
  # Whether DPS drops the record with the enrollment is not documented: delete it by name (gone = success).
  if [[ $record != absent || $DRY_RUN == 1 ]]; then
    az_delete "registration record $REGISTRATION_ID" -- az iot dps enrollment registration delete --dps-name "$DPS" -g "$RG" --enrollment-id "$REGISTRATION_ID" -o none
  fi
fi

# 2. The hub identity.
HUB_NAMES=()
if [[ -n $HUB ]]; then
  HUB_NAMES=("$(hub_name "$HUB")")
elif [[ -n $assigned_hub ]]; then
  HUB_NAMES=("$(hub_name "$assigned_hub")")
else
  linked=''
  call --into linked --placeholder '<hub>.azure-devices.net' -- az iot dps linked-hub list --dps-name "$DPS" -g "$RG" --query '[].name' -o tsv
  while IFS= read -r host; do if [[ -n $host ]]; then HUB_NAMES+=("$(hub_name "$host")"); fi; done <<<"$linked"
fi
for hub in "${HUB_NAMES[@]}"; do
  az_delete "device $DEVICE_ID in hub $hub" -- az iot hub device-identity delete --hub-name "$hub" -g "$RG" --device-id "$DEVICE_ID" -o none
done

# 3. The key: the webhook refuses the device from now on (after its key cache expires, KEY_CACHE_TTL_SECONDS).
if [[ $KEEP_KEY != 1 && -n $GROUP_ID ]]; then
  # A group device: disable its own key, never delete it (a missing device key means "use the group key").
  name=$(device_secret_name "$REGISTRATION_ID")
  secret_state "$VAULT" "$name"
  if [[ $SECRET_FOUND == 0 && $DRY_RUN != 1 ]]; then
    note "key secret $name: none; the device used the group key, and the disabled individual enrollment keeps it out"
  elif [[ $SECRET_ENABLED == false ]]; then
    note "key secret $name: already disabled"
  else
    call -- az keyvault secret set-attributes --vault-name "$VAULT" --name "$name" --enabled false -o none
  fi
elif [[ $KEEP_KEY != 1 ]]; then
  delete_secret "$(device_secret_name "$REGISTRATION_ID")"
fi
if [[ $DRY_RUN != 1 ]]; then say "device $REGISTRATION_ID deprovisioned"; fi
