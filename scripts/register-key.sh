#!/usr/bin/env bash
# register-key.sh: stores a device's (or an enrollment group's) public key PEM in Key Vault under the name the
# webhook looks up (functions/keys/names.ts).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: register-key.sh --vault NAME (--registration-id ID | --group-id ID) --public-key FILE
                       [--tag KEY=VALUE]... [--disabled] [--replace] [--dry-run]

Stores the public key as a Key Vault secret:
  az keyvault secret set --vault-name NAME --name <secret name> --file FILE --encoding utf-8
                         --content-type application/x-pem-file --tags [k=v ...] public-key-sha256=<digest>
                         [--disabled true]
Secret name (the webhook's rule): the id lower-cased; device-<id> when it is 1-119 of [a-z0-9-], otherwise
devicehash-<sha256 hex of the lower-cased id>; for a group, group-<id> / grouphash-<sha256>.

Options:
  --vault NAME           the Key Vault (default: $DPSJWT_VAULT, printed by deploy.sh)
  --registration-id ID   the device's DPS registration id
  --group-id ID          an enrollment group id instead: one key for every device of the group
  --public-key FILE      SPKI PEM ("-----BEGIN PUBLIC KEY-----", one or more blocks); a private key is refused
  --tag KEY=VALUE        a secret tag; the webhook copies it into the device twin's tags (repeatable, at most 13)
  --disabled             store the key switched off (factory flow): the webhook refuses the device until
                         activate.sh enables it
  --replace              allow replacing a different key already stored under that name (key rotation)
  --dry-run              print the commands, run none
  -h, --help             this text

Running it again with the same key changes nothing, also while the key is disabled: the key is recognised by the
tag public-key-sha256 (sha256 of its DER SubjectPublicKeyInfo), not by reading the secret, which Key Vault refuses
while it is disabled. az adds a "file-encoding" tag; the webhook ignores both.
The signed-in identity needs "Key Vault Secrets Officer" on the vault (deploy.sh grants it with --operator).
EOF
}

VAULT=${DPSJWT_VAULT:-}
REGISTRATION_ID=''
GROUP_ID=''
PUBLIC_KEY=''
DISABLED=0
REPLACE=0
TAGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --vault) VAULT=$(opt_value "$@"); shift 2 ;;
    --registration-id) REGISTRATION_ID=$(opt_value "$@"); shift 2 ;;
    --group-id) GROUP_ID=$(opt_value "$@"); shift 2 ;;
    --public-key) PUBLIC_KEY=$(opt_value "$@"); shift 2 ;;
    --tag) TAGS+=("$(opt_value "$@")"); shift 2 ;;
    --disabled) DISABLED=1; shift ;;
    --replace) REPLACE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

require --vault "$VAULT"
check_vault_name --vault "$VAULT"
select_key_secret "$REGISTRATION_ID" "$GROUP_ID"
require --public-key "$PUBLIC_KEY"
if [[ ${#TAGS[@]} -gt 13 ]]; then usage_error "--tag: at most 13 tags (Key Vault allows 15; az adds file-encoding, this script public-key-sha256)"; fi
for tag in "${TAGS[@]}"; do check_tag --tag "$tag"; done

# The file: an SPKI public key PEM, never a private key.
if [[ ! -e $PUBLIC_KEY ]]; then usage_error "--public-key $PUBLIC_KEY: no such file"; fi
if [[ ! -f $PUBLIC_KEY || ! -r $PUBLIC_KEY ]]; then usage_error "--public-key $PUBLIC_KEY: not a readable file"; fi
if grep -q -- 'PRIVATE KEY-----' "$PUBLIC_KEY"; then
  usage_error "--public-key $PUBLIC_KEY is a PRIVATE key; pass the public key (keygen.sh writes it as *.pub.pem) and keep the private key on the device"
fi
labels=$(grep -oE -- '-----BEGIN [A-Z0-9 ]+-----' "$PUBLIC_KEY" || true)
if [[ -z $labels ]]; then usage_error "--public-key $PUBLIC_KEY is not a PEM file (no -----BEGIN PUBLIC KEY----- block)"; fi
while IFS= read -r label; do
  if [[ $label != '-----BEGIN PUBLIC KEY-----' ]]; then
    usage_error "--public-key $PUBLIC_KEY holds a '${label//-/}' block; only PUBLIC KEY (SPKI) blocks are accepted"
  fi
done <<<"$labels"
if ! openssl pkey -pubin -in "$PUBLIC_KEY" -noout 2>/dev/null; then
  usage_error "--public-key $PUBLIC_KEY: openssl cannot read it as a public key"
fi
if ! openssl pkey -pubin -in "$PUBLIC_KEY" -noout -text 2>/dev/null | grep -qE 'prime256v1|P-256'; then
  note "warning: $PUBLIC_KEY is not a P-256 key; the webhook accepts it only if JWT_ALGORITHMS allows its algorithm (default ES256)"
fi
if [[ $(wc -c <"$PUBLIC_KEY") -gt 25000 ]]; then usage_error "--public-key $PUBLIC_KEY is over Key Vault's 25 KB secret limit"; fi

# Already there? Compared by the public-key digest tag, never by reading the value: Key Vault refuses to read a
# disabled secret (403 SecretDisabled), and the factory flow stores keys disabled. Same key: nothing to do. Another
# key: only with --replace.
DIGEST=$(public_key_digest "$PUBLIC_KEY")
if [[ ! $DIGEST =~ ^[0-9a-f]{64}$ ]]; then usage_error "--public-key $PUBLIC_KEY: cannot compute its SHA-256 digest"; fi
secret_state "$VAULT" "$SECRET_NAME"
if [[ $SECRET_FOUND == 1 ]]; then
  same=0
  if [[ $SECRET_DIGEST == "$DIGEST" ]]; then
    same=1
  elif [[ -z $SECRET_DIGEST && $SECRET_ENABLED == true ]]; then
    # Stored before the digest tag existed: compare the PEM itself (readable while enabled).
    stored=''
    call --into stored -- az keyvault secret show --vault-name "$VAULT" --name "$SECRET_NAME" --query value -o tsv
    normalize() { tr -d '\r' | sed -e 's/[[:space:]]*$//' -e '/^$/d'; }
    if [[ $(normalize <<<"$stored") == "$(normalize <"$PUBLIC_KEY")" ]]; then same=1; fi
  elif [[ -z $SECRET_DIGEST && $REPLACE != 1 ]]; then
    fail "$SECRET_NAME in $VAULT is disabled and has no $DIGEST_TAG tag (stored by an older register-key.sh), so it cannot be compared with $PUBLIC_KEY; pass --replace to store this key"
  fi
  if [[ $same == 1 ]]; then
    say "$WHO: this key is already stored as $SECRET_NAME in $VAULT ($([[ $SECRET_ENABLED == true ]] && echo enabled || echo disabled)); nothing changed (activate.sh enables it or changes tags)"
    exit 0
  fi
  if [[ $REPLACE != 1 ]]; then
    fail "$SECRET_NAME in $VAULT holds a different key for $WHO; pass --replace to rotate it (the old key stops working)"
  fi
  note "$WHO: replacing the key stored as $SECRET_NAME (--replace)"
elif secret_deleted "$VAULT" "$SECRET_NAME"; then
  fail "$SECRET_NAME is deleted but recoverable in $VAULT (soft delete): az keyvault secret recover --vault-name $VAULT --name $SECRET_NAME, or purge it first (deprovision.sh --purge)"
fi

args=(az keyvault secret set --vault-name "$VAULT" --name "$SECRET_NAME" --file "$PUBLIC_KEY" --encoding utf-8
  --content-type application/x-pem-file --tags "${TAGS[@]}" "$DIGEST_TAG=$DIGEST")
if [[ $DISABLED == 1 ]]; then args+=(--disabled true); fi
args+=(-o none)
call -- "${args[@]}"

if [[ $DRY_RUN != 1 ]]; then
  state=enabled
  if [[ $DISABLED == 1 ]]; then state='disabled (activate it with activate.sh)'; fi
  say "$WHO: public key stored as $SECRET_NAME in $VAULT, $state"
fi
