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
  az storage account create              the portal app's storage: host and deployment package
                                         (default PREFIX without - plus "pst")
  az functionapp create --flexconsumption-location LOC --runtime node --runtime-version 22
                        --deployment-storage-auth-type SystemAssignedIdentity --assign-identity [system]
                                         the portal's function app    (default PREFIX-portal)
  az functionapp deployment config set   an app made with a connection string for its package: switched to
                                         the identity (SystemAssignedIdentity)
  az role assignment create              for the app's system-assigned identity: "Key Vault Secrets Officer" on
                                         the vault only (the narrowest built-in role that may update a secret's
                                         attributes and tags, secrets/setSecret; "Key Vault Secrets User" only
                                         reads), "Storage Blob Data Owner" on its storage account (host storage)
  az ad app create --app-roles ...       the Entra app registration (display name = the app's name) with the
                                         app role Device.Activate, unless one of that exact name exists or
                                         --client-id names one; az ad sp create; assignment required, so only
                                         users given the role can sign in at all        [needs Entra rights]
  az ad app credential reset             the client secret, made once and stored only as the app setting
                                         MICROSOFT_PROVIDER_AUTHENTICATION_SECRET        [needs Entra rights]
  az webapp auth microsoft update        App Service Authentication with Microsoft Entra ID (authV2 extension,
  az webapp auth update                  installed when missing): sign-in required, HTTPS only
  az functionapp config appsettings set  KEY_VAULT_URL, PORTAL_FIELDS, AzureWebJobsStorage__accountName (when
                                         changed); PORTAL_CSRF_SECRET (made once). Secrets go in a 0600 file
                                         (--settings @FILE), never on argv. Then the connection strings
                                         AzureWebJobsStorage and DEPLOYMENT_STORAGE_CONNECTION_STRING are deleted:
                                         storage by identity only, no account key in any setting
  esbuild bundle + az functionapp deployment source config-zip   (only when the bundle changed; a tag records it)

Options:
  --location LOC           Azure region (required)
  --prefix PREFIX          as given to deploy.sh (names the defaults below)
  -g, --resource-group RG  resource group (default PREFIX-rg; must exist: run deploy.sh first)
  --vault NAME             the webhook's Key Vault (default PREFIX-kv)
  --app NAME               the portal's function app (default PREFIX-portal)
  --storage NAME           its storage account (default PREFIX without - plus "pst")
  --fields-file FILE       the activation form (default portal/fields.example.json)
  --client-id ID           use this existing app registration instead of creating one
  --no-publish             create and configure, publish nothing
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
PUBLISH=1
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
    --no-publish) PUBLISH=0; shift ;;
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
HOST_STORAGE_ROLE='Storage Blob Data Owner'
HASH_TAG=dpsJwtPortalCodeSha256
SECRET_SETTING=MICROSOFT_PROVIDER_AUTHENTICATION_SECRET
APP_URL="https://$APP.azurewebsites.net"

# ---------------------------------------------------------------------------------------------------------------------
# The vault (deploy.sh made it) and the portal's function app with its identity.

VAULT_ID='' VAULT_URI=''
call --into VAULT_ID --placeholder '<vault-id>' -- az keyvault show -n "$VAULT" -g "$RG" --query id -o tsv
call --into VAULT_URI --placeholder "https://$VAULT.vault.azure.net/" -- az keyvault show -n "$VAULT" -g "$RG" --query properties.vaultUri -o tsv
VAULT_URI=${VAULT_URI%/}

STORAGE_ID=''
if az_exists STORAGE_ID -- az storage account show -n "$STORAGE" -g "$RG" --query id -o tsv; then
  note "storage account $STORAGE: exists"
else
  call -- az storage account create -n "$STORAGE" -g "$RG" -l "$LOCATION" --sku Standard_LRS --kind StorageV2 \
    --min-tls-version TLS1_2 --allow-blob-public-access false -o none
  call --into STORAGE_ID --placeholder '<portal-storage-id>' -- az storage account show -n "$STORAGE" -g "$RG" --query id -o tsv
fi

# The package container (deployment storage) is reached by the app's system-assigned identity, as the webhook's
# is: az then grants that identity Storage Blob Data Contributor on the account itself (appservice custom.py
# _prepare_flex_deployment_storage_identity). Without --deployment-storage-auth-type az would keep the account's
# connection string, key included, in the app setting DEPLOYMENT_STORAGE_CONNECTION_STRING. --assign-identity
# without --scope: no role from az beyond that one (facts §1.3).
APP_ID=''
CREATED=0
if az_exists APP_ID -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv; then
  note "function app $APP: exists"
else
  call -- az functionapp create -g "$RG" -n "$APP" --storage-account "$STORAGE" --flexconsumption-location "$LOCATION" \
    --runtime node --runtime-version 22 --instance-memory 2048 \
    --deployment-storage-name "$STORAGE" --deployment-storage-auth-type SystemAssignedIdentity --assign-identity '[system]' -o none
  call --into APP_ID --placeholder '<portal-app-id>' -- az functionapp show -g "$RG" -n "$APP" --query id -o tsv
  CREATED=1
fi

PRINCIPAL_ID=''
# (A dry run plans for the app created above, whose identity create --assign-identity made.)
call --into PRINCIPAL_ID --placeholder '<portal-principal-id>' -- az functionapp identity show -g "$RG" -n "$APP" --query principalId -o tsv
if [[ -z $PRINCIPAL_ID ]]; then
  call --into PRINCIPAL_ID --placeholder '<portal-principal-id>' -- az functionapp identity assign -g "$RG" -n "$APP" --query principalId -o tsv
elif [[ $DRY_RUN != 1 ]]; then
  note "function app $APP: system-assigned identity exists"
fi
# An app an earlier deploy-portal.sh made has its package container behind a connection string: the same container
# by the identity from now on (update_deployment_configs keeps the container, assigns the identity and its role).
if [[ $CREATED == 0 ]]; then
  package_auth=''
  call --into package_auth --placeholder '' -- az functionapp deployment config show -g "$RG" -n "$APP" --query storage.authentication.type -o tsv
  if [[ ${package_auth,,} == systemassignedidentity ]]; then
    note "deployment storage of $APP: by its identity"
  else
    call -- az functionapp deployment config set -g "$RG" -n "$APP" --deployment-storage-auth-type SystemAssignedIdentity -o none
  fi
fi
# What the identity may do: change device keys on this vault; run the host on its own storage account (blob).
grant "$VAULT_ID" "$VAULT" "$PRINCIPAL_ID" ServicePrincipal "$ROLE"
grant "$STORAGE_ID" "$STORAGE" "$PRINCIPAL_ID" ServicePrincipal "$HOST_STORAGE_ROLE"

# ---------------------------------------------------------------------------------------------------------------------
# Sign-in: an Entra app registration with the app role, and App Service Authentication in front of every request.
# Creating an app registration and a service principal needs Entra rights (Application Developer, or users allowed
# to register applications); --client-id skips both for an operator without them.

if [[ -z $CLIENT_ID ]]; then
  # By exact name: `az ad app list --display-name X` filters startswith(displayName, X) (role custom.py
  # list_applications), so acme-portal would also find acme-portal-old.
  call --into CLIENT_ID --placeholder '' -- az ad app list --filter "displayName eq '$APP'" --query '[0].appId' -o tsv
fi
if [[ -z $CLIENT_ID ]]; then
  roles_file='<app-roles.json>'
  if [[ $DRY_RUN != 1 ]]; then
    new_temp_file roles_file app-roles.json
    role_id=$(node -e 'console.log(require("crypto").randomUUID())')
    printf '[{"allowedMemberTypes":["User"],"description":"Activate and revoke devices in the portal","displayName":"Device activation","isEnabled":true,"value":"Device.Activate","id":"%s"}]\n' "$role_id" >"$roles_file"
  fi
  call --into CLIENT_ID --placeholder '<client-id>' -- az ad app create --display-name "$APP" --sign-in-audience AzureADMyOrg \
    --web-redirect-uris "$APP_URL/.auth/login/aad/callback" --enable-id-token-issuance true --app-roles "@$roles_file" --query appId -o tsv
else
  note "app registration $APP: exists ($CLIENT_ID)"
fi
# shellcheck disable=SC2034 # set by az_exists through its name
SP_ID=''
if az_exists SP_ID -- az ad sp show --id "$CLIENT_ID" --query id -o tsv; then
  note "service principal of $APP: exists"
else
  call -- az ad sp create --id "$CLIENT_ID" -o none
fi
required=''
call --into required --placeholder false -- az ad sp show --id "$CLIENT_ID" --query appRoleAssignmentRequired -o tsv
if [[ ${required,,} != true ]]; then
  call -- az ad sp update --id "$CLIENT_ID" --set appRoleAssignmentRequired=true
fi
TENANT_ID=''
call --into TENANT_ID --placeholder '<tenant-id>' -- az account show --query tenantId -o tsv
# An empty tenant would make the issuer https://login.microsoftonline.com//v2.0: sign-in broken for everyone.
if [[ -z $TENANT_ID ]]; then fail "az account show gave no tenantId; sign in again (az login)"; fi

# ---------------------------------------------------------------------------------------------------------------------
# Settings. The client secret and the CSRF secret are made once and kept (every instance signs forms with the CSRF
# secret); both reach az only through a 0600 file (--settings @FILE), never argv. Only names are read back.

have=''
call --into have --placeholder '' -- az functionapp config appsettings list -g "$RG" -n "$APP" \
  --query "[?name=='$SECRET_SETTING' || name=='PORTAL_CSRF_SECRET'].name" -o tsv
secret_settings=()
if ! grep -qxF -- "$SECRET_SETTING" <<<"$have"; then
  CLIENT_SECRET=''
  call --into CLIENT_SECRET --secret --placeholder '<client-secret>' -- az ad app credential reset --id "$CLIENT_ID" --append \
    --display-name "$APP-easyauth" --years 1 --query password -o tsv
  secret_settings+=("$SECRET_SETTING=$CLIENT_SECRET")
fi
if ! grep -qxF -- PORTAL_CSRF_SECRET <<<"$have"; then
  CSRF_SECRET=''
  call --into CSRF_SECRET --secret --placeholder '<csrf-secret>' -- openssl rand -base64 32
  secret_settings+=("PORTAL_CSRF_SECRET=$CSRF_SECRET")
fi
plain=("KEY_VAULT_URL=$VAULT_URI" "PORTAL_FIELDS=$FIELDS_JSON" "AzureWebJobsStorage__accountName=$STORAGE")
current=''
call --into current --placeholder '' -- az functionapp config appsettings list -g "$RG" -n "$APP" \
  --query "[?name=='KEY_VAULT_URL' || name=='PORTAL_FIELDS' || name=='AzureWebJobsStorage__accountName'].[name, value]" -o tsv
declare -A now_set=()
while IFS=$'\t' read -r name value; do
  if [[ -n $name ]]; then now_set[$name]=$value; fi
done <<<"$current"
changed=()
for setting in "${plain[@]}"; do
  name=${setting%%=*}
  if [[ -z ${now_set[$name]+set} || ${now_set[$name]} != "${setting#*=}" ]]; then changed+=("$setting"); fi
done
if [[ ${#secret_settings[@]} -gt 0 ]]; then
  settings_file=''
  write_settings_file settings_file "${secret_settings[@]}"
  changed+=("@$settings_file")
fi
if [[ ${#changed[@]} -gt 0 ]]; then
  call -- az functionapp config appsettings set -g "$RG" -n "$APP" --settings "${changed[@]}" -o none
else
  note "app settings: up to date"
fi
# Host storage by identity: the connection strings az wrote (the host's, and the package container's on an app made
# before it was by identity) go, after AzureWebJobsStorage__accountName is in (facts §1.5). Only names are read:
# the values hold the account key.
stale=''
call --into stale --placeholder 'AzureWebJobsStorage' -- az functionapp config appsettings list -g "$RG" -n "$APP" \
  --query "[?name=='AzureWebJobsStorage' || name=='DEPLOYMENT_STORAGE_CONNECTION_STRING'].name" -o tsv
if [[ -n $stale ]]; then
  mapfile -t stale_names <<<"$stale"
  call -- az functionapp config appsettings delete -g "$RG" -n "$APP" --setting-names "${stale_names[@]}" -o none
else
  note "storage connection strings: none (host and package storage by identity)"
fi

# App Service Authentication (v2). `az webapp auth microsoft|update` with these flags come from the authV2
# extension: core az only has the classic `webapp auth` (learn.microsoft.com/cli/azure/webapp/auth;
# azure-cli-extensions src/authV2/azext_authV2/_params.py). Each is written only when it differs.
ensure_extension authV2
ISSUER="https://login.microsoftonline.com/$TENANT_ID/v2.0"
AUDIENCE="api://$CLIENT_ID"
aad=''
call --into aad --placeholder '' -- az webapp auth microsoft show -g "$RG" -n "$APP" \
  --query '[registration.clientId, registration.clientSecretSettingName, registration.openIdIssuer, validation.allowedAudiences[0]]' -o tsv
# -o tsv prints a list of values one per line.
if [[ $aad != "$CLIENT_ID"$'\n'"$SECRET_SETTING"$'\n'"$ISSUER"$'\n'"$AUDIENCE" ]]; then
  call -- az webapp auth microsoft update -g "$RG" -n "$APP" --client-id "$CLIENT_ID" \
    --client-secret-setting-name "$SECRET_SETTING" --issuer "$ISSUER" --allowed-token-audiences "$AUDIENCE" --yes -o none
else
  note "Entra ID sign-in: configured"
fi
platform=''
# The authsettingsV2 resource: its settings sit under properties.
call --into platform --placeholder '' -- az webapp auth show -g "$RG" -n "$APP" \
  --query '[properties.platform.enabled, properties.globalValidation.unauthenticatedClientAction, properties.globalValidation.redirectToProvider, properties.httpSettings.requireHttps]' -o tsv
if [[ ${platform,,} != $'true\nredirecttologinpage\nazureactivedirectory\ntrue' ]]; then
  call -- az webapp auth update -g "$RG" -n "$APP" --enabled true --action RedirectToLoginPage \
    --redirect-provider azureactivedirectory --require-https true -o none
else
  note "App Service Authentication: on"
fi

# ---------------------------------------------------------------------------------------------------------------------
# The code: one ESM bundle, published when its content differs from the last publish (tag HASH_TAG on the app).

if [[ $PUBLISH == 1 ]]; then
  stage='<work-dir>/portal'
  if [[ $DRY_RUN != 1 ]]; then
    work_dir
    stage=$WORK_DIR/portal
    mkdir -p "$stage"
  fi
  # @azure/functions-core is the worker's own module, never bundled.
  call --passthrough --cwd "$REPO_ROOT" -- npx esbuild portal/functions.ts --bundle --platform=node --format=esm --target=node22 \
    --external:@azure/functions-core --outfile="$stage/portal.mjs" --log-level=warning \
    "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"
  hash='<package-sha256>'
  if [[ $DRY_RUN != 1 ]]; then
    printf '{"name":"dps-jwt-webhook-portal","private":true,"type":"module","main":"portal.mjs"}\n' >"$stage/package.json"
    # routePrefix '': the pages live at the site root (/devices), not under /api.
    printf '{"version":"2.0","extensions":{"http":{"routePrefix":""}}}\n' >"$stage/host.json"
  fi
  call --passthrough --cwd "$stage" -- zip -q -X -r ../portal.zip .
  if [[ $DRY_RUN != 1 ]]; then hash=$(package_hash "$stage/../portal.zip"); fi
  published=''
  call --into published --placeholder '' -- az functionapp show -g "$RG" -n "$APP" --query "tags.$HASH_TAG" -o tsv
  if [[ $published == "$hash" ]]; then
    note "portal code: unchanged since the last publish (sha256 $hash)"
  else
    call -- az functionapp deployment source config-zip -g "$RG" -n "$APP" --src "$stage/../portal.zip" -o none
    call -- az tag update --resource-id "$APP_ID" --operation Merge --tags "$HASH_TAG=$hash" -o none
  fi
fi

if [[ $DRY_RUN == 1 ]]; then exit 0; fi
say ""
say "Portal: $APP_URL/devices (Entra sign-in; app role Device.Activate required)"
say "  identity: \"$ROLE\" on $VAULT, \"$HOST_STORAGE_ROLE\" on $STORAGE (host and package storage, no key;"
say "            role assignments can take up to 10 minutes to apply)"
say "  assign the role to users: Entra admin center > Enterprise applications > $APP > Users and groups"
