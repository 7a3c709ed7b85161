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

# State and tags from list-versions: Key Vault refuses to read a disabled secret (403 SecretDisabled), and enabling
# one registered disabled is this script's whole job.
secret_state "$VAULT" "$SECRET_NAME"
if [[ $SECRET_FOUND == 0 && $DRY_RUN != 1 ]]; then
  fail "no key is registered for $WHO ($SECRET_NAME) in $VAULT; run register-key.sh first"
fi

# Tags are replaced as a whole by set-attributes, so merge: the stored ones, then ours on top.
declare -A merged=()
order=()
changed=0
for i in "${!SECRET_TAG_KEYS[@]}"; do
  [[ -n ${SECRET_TAG_KEYS[$i]} ]] || continue
  merged[${SECRET_TAG_KEYS[$i]}]=${SECRET_TAG_VALUES[$i]:-}
  order+=("${SECRET_TAG_KEYS[$i]}")
done
for tag in "${TAGS[@]}"; do
  key=${tag%%=*} value=${tag#*=}
  if [[ -z ${merged[$key]+set} ]]; then order+=("$key"); changed=1; elif [[ ${merged[$key]} != "$value" ]]; then changed=1; fi
  merged[$key]=$value
done
if [[ ${#order[@]} -gt 15 ]]; then fail "$SECRET_NAME would have ${#order[@]} tags; Key Vault allows 15"; fi

if [[ $SECRET_ENABLED == true && $changed == 0 ]]; then
  say "$WHO: $SECRET_NAME is already enabled with these tags; nothing changed"
  exit 0
fi

args=(az keyvault secret set-attributes --vault-name "$VAULT" --name "$SECRET_NAME" --enabled true)
if [[ $changed == 1 ]]; then
  args+=(--tags)
  for key in "${order[@]}"; do args+=("$key=${merged[$key]}"); done
fi
args+=(-o none)
call -- "${args[@]}"
if [[ $DRY_RUN != 1 ]]; then say "$WHO: $SECRET_NAME enabled in $VAULT; the device can now register"; fi
