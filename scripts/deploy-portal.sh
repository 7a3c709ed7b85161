#!/usr/bin/env bash
# deploy-portal.sh: the device activation portal (portal/) as its own function app, so the webhook's identity stays
# read-only on the vault while only the portal's identity may change device keys. See docs/portal.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF2'
Usage: deploy-portal.sh --location LOC --prefix PREFIX [options] [--dry-run]

Creates what is missing (each resource is looked up first), beside what deploy.sh made with the same prefix:
  az storage account create              the portal app's storage      (default PREFIX without - plus "pst")
  az functionapp create --flexconsumption-location LOC --runtime node --runtime-version 22
                                         the portal's function app    (default PREFIX-portal)
  az functionapp identity assign         a system-assigned identity, granted "Key Vault Secrets Officer" on the
                                         vault only: the narrowest built-in role that may update a secret's
                                         attributes and tags (secrets/setSecret); "Key Vault Secrets User" only reads
  az ad app create --app-roles ...       the Entra app registration with the app role Device.Activate
                                         (unless --client-id names an existing one); az ad sp create; assignment
                                         required, so only users given the role can sign in at all
  az ad app credential reset             the client secret, stored only as the app setting
                                         MICROSOFT_PROVIDER_AUTHENTICATION_SECRET
  az webapp auth microsoft update        App Service Authentication with Microsoft Entra ID (authV2 extension)
  az webapp auth update --enabled true --action RedirectToLoginPage --redirect-provider azureactivedirectory
  az functionapp config appsettings set  KEY_VAULT_URL, PORTAL_FIELDS, PORTAL_CSRF_SECRET (made once)
  esbuild bundle + az functionapp deployment source config-zip

Options:
  --location LOC           Azure region (required)
  --prefix PREFIX          as given to deploy.sh (names the defaults below)
  -g, --resource-group RG  resource group (default PREFIX-rg; must exist: run deploy.sh first)
  --vault NAME             the webhook's Key Vault (default PREFIX-kv)
  --app NAME               the portal's function app (default PREFIX-portal)
  --storage NAME           its storage account (default PREFIX without - plus "pst")
  --fields-file FILE       the activation form (default portal/fields.example.json)
  --client-id ID           use this existing app registration instead of creating one
  --dry-run                print the commands, run none
  -h, --help               this text

Afterwards assign the app role Device.Activate to the machine makers' accounts (Entra admin center: Enterprise
applications > the portal > Users and groups). A user without it gets 403 from the portal.
EOF2
}

LOCATION=''
PREFIX=''
RG=''
VAULT=''
APP=''
STORAGE=''
FIELDS_FILE="$REPO_ROOT/portal/fields.example.json"
CLIENT_ID=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --location | -l) LOCATION=$(opt_value "$@"); shift 2 ;;
    --prefix) PREFIX=$(opt_value "$@"); shift 2 ;;
    -g | --resource-group) RG=$(opt_value "$@"); shift 2 ;;
    --vault) VAULT=$(opt_value "$@"); shift 2 ;;
    --app) APP=$(opt_value "$@"); shift 2 ;;
    --storage) STORAGE=$(opt_value "$@"); shift 2 ;;
    --fields-file) FIELDS_FILE=$(opt_value "$@"); shift 2 ;;
    --client-id) CLIENT_ID=$(opt_value "$@"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done

require --location "$LOCATION"
check_match --location "$LOCATION" '^[a-z][a-z0-9]{2,39}$' 'an Azure region name such as westeurope (az account list-locations)'
if [[ -n $PREFIX ]]; then
  check_match --prefix "$PREFIX" '^[a-z][a-z0-9-]{1,16}[a-z0-9]$' '3-18 of a-z 0-9 -, starting with a letter'
  RG=${RG:-$PREFIX-rg}
  VAULT=${VAULT:-$PREFIX-kv}
  APP=${APP:-$PREFIX-portal}
  if [[ -z $STORAGE ]]; then STORAGE=${PREFIX//-/}pst; STORAGE=${STORAGE:0:24}; fi
fi
for pair in "--resource-group:$RG" "--vault:$VAULT" "--storage:$STORAGE" "--app:$APP"; do
  if [[ -z ${pair#*:} ]]; then usage_error "missing ${pair%%:*} (or --prefix)"; fi
done
check_resource_group --resource-group "$RG"
check_vault_name --vault "$VAULT"
check_storage_name --storage "$STORAGE"
check_app_name --app "$APP"
if [[ -n $CLIENT_ID ]]; then
  check_match --client-id "$CLIENT_ID" '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$' 'an application (client) id GUID'
fi
if [[ ! -r $FIELDS_FILE ]]; then usage_error "--fields-file $FIELDS_FILE: cannot be read"; fi
# The portal refuses a bad declaration at start; refuse it here first, with the same message.
if ! fields_error=$(node -e '
  const text = require("fs").readFileSync(process.argv[1], "utf8");
  try { JSON.parse(text) } catch { console.error(process.argv[1] + " is not valid JSON"); process.exit(1) }' "$FIELDS_FILE" 2>&1); then
  usage_error "--fields-file: $fields_error"
fi
FIELDS_JSON=$(node -e 'process.stdout.write(JSON.stringify(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))))' "$FIELDS_FILE")
ROLE='Key Vault Secrets Officer'
APP_URL="https://$APP.azurewebsites.net"

# ---------------------------------------------------------------------------------------------------------------------
# The vault (deploy.sh made it) and the portal's function app with its identity.

call --into VAULT_ID --placeholder '<vault-id>' -- az keyvault show -n "$VAULT" -g "$RG" --query id -o tsv
call --into VAULT_URI --placeholder "https://$VAULT.vault.azure.net/" -- az keyvault show -n "$VAULT" -g "$RG" --query properties.vaultUri -o tsv
VAULT_URI=${VAULT_URI%/}

if az_exists found -- az storage account show -n "$STORAGE" -g "$RG" --query id -o tsv; then
  note "storage account $STORAGE: exists"
else
  call -- az storage account create -n "$STORAGE" -g "$RG" -l "$LOCATION" --sku Standard_LRS --kind StorageV2 \
    --min-tls-version TLS1_2 --allow-blob-public-access false -o none
fi

if az_exists found -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv; then
  note "function app $APP: exists"
else
  call -- az functionapp create -g "$RG" -n "$APP" --storage-account "$STORAGE" --flexconsumption-location "$LOCATION" \
    --runtime node --runtime-version 22 --instance-memory 2048 -o none
fi

PRINCIPAL_ID=''
call --into PRINCIPAL_ID --placeholder '' -- az functionapp identity show -g "$RG" -n "$APP" --query principalId -o tsv
if [[ -z $PRINCIPAL_ID ]]; then
  call --into PRINCIPAL_ID --placeholder '<portal-principal-id>' -- az functionapp identity assign -g "$RG" -n "$APP" --query principalId -o tsv
fi
count=''
# By principalId, not --assignee: a just-created identity is not yet in Graph (azure-cli-facts §2.3 item 6).
call --into count --placeholder 0 -- az role assignment list --scope "$VAULT_ID" --role "$ROLE" --query "[?principalId=='$PRINCIPAL_ID'] | length(@)" -o tsv
if [[ ${count:-0} == 0 ]]; then
  call -- az role assignment create --assignee-object-id "$PRINCIPAL_ID" --assignee-principal-type ServicePrincipal --role "$ROLE" --scope "$VAULT_ID" -o none
else
  note "role \"$ROLE\" on $VAULT for the portal: exists"
fi

# ---------------------------------------------------------------------------------------------------------------------
# Sign-in: an Entra app registration with the app role, and App Service Authentication in front of every request.

if [[ -z $CLIENT_ID ]]; then
  call --into CLIENT_ID --placeholder '' -- az ad app list --display-name "$APP" --query '[0].appId' -o tsv
fi
if [[ -z $CLIENT_ID ]]; then
  roles_file='<app-roles.json>'
  if [[ $DRY_RUN != 1 ]]; then
    roles_file=$(mktemp)
    trap 'rm -f "$roles_file"' EXIT
    role_id=$(node -e 'console.log(require("crypto").randomUUID())')
    printf '[{"allowedMemberTypes":["User"],"description":"Activate and revoke devices in the portal","displayName":"Device activation","isEnabled":true,"value":"Device.Activate","id":"%s"}]\n' "$role_id" >"$roles_file"
  fi
  call --into CLIENT_ID --placeholder '<client-id>' -- az ad app create --display-name "$APP" --sign-in-audience AzureADMyOrg \
    --web-redirect-uris "$APP_URL/.auth/login/aad/callback" --enable-id-token-issuance true --app-roles "@$roles_file" --query appId -o tsv
  call -- az ad sp create --id "$CLIENT_ID" -o none
fi
call -- az ad sp update --id "$CLIENT_ID" --set appRoleAssignmentRequired=true
call --into TENANT_ID --placeholder '<tenant-id>' -- az account show --query tenantId -o tsv

have_secret=''
call --into have_secret --placeholder '' -- az functionapp config appsettings list -g "$RG" -n "$APP" \
  --query "[?name=='MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'] | length(@)" -o tsv
if [[ ${have_secret:-0} == 0 ]]; then
  call --into CLIENT_SECRET --secret --placeholder '<client-secret>' -- az ad app credential reset --id "$CLIENT_ID" --append \
    --display-name "$APP-easyauth" --years 1 --query password -o tsv
  call -- az functionapp config appsettings set -g "$RG" -n "$APP" --settings "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET=$CLIENT_SECRET" -o none
fi

call -- az extension add --name authV2 --upgrade --yes
call -- az webapp auth microsoft update -g "$RG" -n "$APP" --client-id "$CLIENT_ID" \
  --client-secret-setting-name MICROSOFT_PROVIDER_AUTHENTICATION_SECRET \
  --issuer "https://login.microsoftonline.com/$TENANT_ID/v2.0" --allowed-token-audiences "api://$CLIENT_ID" --yes -o none
call -- az webapp auth update -g "$RG" -n "$APP" --enabled true --action RedirectToLoginPage \
  --redirect-provider azureactivedirectory --require-https true -o none

# ---------------------------------------------------------------------------------------------------------------------
# Settings (the CSRF secret is made once and kept: every instance signs forms with it) and the code.

have_csrf=''
call --into have_csrf --placeholder '' -- az functionapp config appsettings list -g "$RG" -n "$APP" \
  --query "[?name=='PORTAL_CSRF_SECRET'] | length(@)" -o tsv
settings=("KEY_VAULT_URL=$VAULT_URI" "PORTAL_FIELDS=$FIELDS_JSON")
if [[ ${have_csrf:-0} == 0 ]]; then
  call --into CSRF_SECRET --secret --placeholder '<csrf-secret>' -- openssl rand -base64 32
  settings+=("PORTAL_CSRF_SECRET=$CSRF_SECRET")
fi
call -- az functionapp config appsettings set -g "$RG" -n "$APP" --settings "${settings[@]}" -o none

stage='<work-dir>/portal'
if [[ $DRY_RUN != 1 ]]; then
  stage=$(mktemp -d)/portal
  mkdir -p "$stage"
fi
# One ESM bundle; @azure/functions-core is the worker's own module, never bundled.
call --passthrough --cwd "$REPO_ROOT" -- npx esbuild portal/functions.ts --bundle --platform=node --format=esm --target=node22 \
  --external:@azure/functions-core --outfile="$stage/portal.mjs" \
  "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"
if [[ $DRY_RUN != 1 ]]; then
  printf '{"name":"dps-jwt-webhook-portal","private":true,"type":"module","main":"portal.mjs"}\n' >"$stage/package.json"
  # routePrefix '': the pages live at the site root (/devices), not under /api.
  printf '{"version":"2.0","extensions":{"http":{"routePrefix":""}}}\n' >"$stage/host.json"
fi
call --passthrough --cwd "$stage" -- zip -q -r ../portal.zip .
call -- az functionapp deployment source config-zip -g "$RG" -n "$APP" --src "$stage/../portal.zip" -o none

if [[ $DRY_RUN == 1 ]]; then exit 0; fi
say ""
say "Portal: $APP_URL/devices (Entra sign-in; app role Device.Activate required)"
say "  identity: \"$ROLE\" on $VAULT (role assignments can take up to 10 minutes to apply)"
say "  assign the role to users: Entra admin center > Enterprise applications > $APP > Users and groups"
