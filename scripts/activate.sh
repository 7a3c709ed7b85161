#!/usr/bin/env bash
# activate.sh: switches on a device's (or group's) key secret and adds tags, for the factory flow: the key is
# registered disabled at manufacture (register-key.sh --disabled) and activated by the machine maker.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: activate.sh --vault NAME (--registration-id ID | --group-id ID) [--tag KEY=VALUE]... [--dry-run]

  az keyvault secret set-attributes --vault-name NAME --name <secret name> --enabled true [--tags ...]

Options:
  --vault NAME           the Key Vault (default: $DPSJWT_VAULT)
  --registration-id ID   the device's DPS registration id
  --group-id ID          an enrollment group's key instead
  --tag KEY=VALUE        add or change a tag (repeatable); tags already on the secret are kept. Tags become the
                         device twin's tags at its next (first) assignment.
  --dry-run              print the commands, run none
  -h, --help             this text

Already enabled with the same tags: nothing is written.
EOF
}

VAULT=${DPSJWT_VAULT:-}
REGISTRATION_ID=''
GROUP_ID=''
TAGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --vault) VAULT=$(opt_value "$@"); shift 2 ;;
    --registration-id) REGISTRATION_ID=$(opt_value "$@"); shift 2 ;;
    --group-id) GROUP_ID=$(opt_value "$@"); shift 2 ;;
    --tag) TAGS+=("$(opt_value "$@")"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

require --vault "$VAULT"
check_vault_name --vault "$VAULT"
select_key_secret "$REGISTRATION_ID" "$GROUP_ID"
for tag in "${TAGS[@]}"; do check_tag --tag "$tag"; done

enabled=''
if ! az_exists enabled -- az keyvault secret show --vault-name "$VAULT" --name "$SECRET_NAME" --query attributes.enabled -o tsv; then
  if [[ $DRY_RUN != 1 ]]; then
    fail "no key is registered for $WHO ($SECRET_NAME) in $VAULT; run register-key.sh first"
  fi
fi

# Tags are replaced as a whole by set-attributes, so merge: the stored ones, then ours on top.
declare -A merged=()
order=()
changed=0
if [[ ${#TAGS[@]} -gt 0 ]]; then
  tag_rows=''
  # shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
  call --into tag_rows --placeholder '' -- az keyvault secret show --vault-name "$VAULT" --name "$SECRET_NAME" \
    --query '[keys(tags || `{}`), values(tags || `{}`)]' -o tsv
  keys_row='' values_row=''
  { IFS= read -r keys_row || true; IFS= read -r values_row || true; } <<<"$tag_rows"
  IFS=$'\t' read -r -a stored_keys <<<"$keys_row"
  IFS=$'\t' read -r -a stored_values <<<"$values_row"
  for i in "${!stored_keys[@]}"; do
    [[ -n ${stored_keys[$i]} ]] || continue
    merged[${stored_keys[$i]}]=${stored_values[$i]:-}
    order+=("${stored_keys[$i]}")
  done
  for tag in "${TAGS[@]}"; do
    key=${tag%%=*} value=${tag#*=}
    if [[ -z ${merged[$key]+set} ]]; then order+=("$key"); changed=1; elif [[ ${merged[$key]} != "$value" ]]; then changed=1; fi
    merged[$key]=$value
  done
  if [[ ${#order[@]} -gt 15 ]]; then fail "$SECRET_NAME would have ${#order[@]} tags; Key Vault allows 15"; fi
fi

if [[ ${enabled,,} == true && $changed == 0 ]]; then
  say "$WHO: $SECRET_NAME is already enabled with these tags; nothing changed"
  exit 0
fi

args=(az keyvault secret set-attributes --vault-name "$VAULT" --name "$SECRET_NAME" --enabled true)
if [[ ${#TAGS[@]} -gt 0 ]]; then
  args+=(--tags)
  for key in "${order[@]}"; do args+=("$key=${merged[$key]}"); done
fi
args+=(-o none)
call -- "${args[@]}"
if [[ $DRY_RUN != 1 ]]; then say "$WHO: $SECRET_NAME enabled in $VAULT; the device can now register"; fi
