import type { FieldConfig, FieldErrors, FieldSpec } from './fields.js';
import { storeTagName } from './fields.js';
import { html, type Html } from './html.js';
import type { DeviceKeyState, Principal, ProvisioningRecord } from './ports.js';

/** Everything a page needs to link and post back; pages are pure functions of it and their data. */
export interface PageContext {
  readonly base: string;
  readonly principal?: Principal;
  readonly csrf?: string;
  readonly signOut?: { readonly url: string; readonly post: boolean };
}

export const STYLESHEET = `
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9}
header{background:#0f3d68;color:#fff;padding:.8rem 1.5rem;display:flex;justify-content:space-between;align-items:center}
header a,header button{color:#fff}
header form{display:inline}
header button{background:none;border:1px solid #fff;border-radius:4px;padding:.2rem .6rem;cursor:pointer}
main{max-width:52rem;margin:1.5rem auto;padding:0 1.5rem}
h1{font-size:1.4rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.45rem .7rem;border-bottom:1px solid #dde1e6}
.state{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-size:.9rem}
.awaiting{background:#fff4ce}.active{background:#dff6dd}
.notice{background:#dff6dd;border-left:4px solid #107c10;padding:.6rem 1rem;margin:1rem 0}
.error{background:#fde7e9;border-left:4px solid #a4262c;padding:.6rem 1rem;margin:1rem 0}
.field{margin:.9rem 0}
.field label{display:block;font-weight:600;margin-bottom:.25rem}
.field input,.field select{padding:.4rem;width:22rem;max-width:100%}
.field .hint{color:#555;font-size:.85rem}
.field .msg{color:#a4262c;font-size:.9rem;margin-top:.2rem}
.field.invalid input,.field.invalid select{border:2px solid #a4262c}
button.primary{background:#0f6cbd;color:#fff;border:0;border-radius:4px;padding:.5rem 1.2rem;font-size:1rem;cursor:pointer}
button.danger{background:#a4262c;color:#fff;border:0;border-radius:4px;padding:.5rem 1.2rem;font-size:1rem;cursor:pointer}
form.search input{padding:.4rem;width:16rem}
dl{display:grid;grid-template-columns:12rem 1fr;gap:.3rem 1rem}
dt{font-weight:600}
`;

export function layout(ctx: PageContext, title: string, body: Html): string {
  const user = ctx.principal;
  const signOut = ctx.signOut;
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Device activation</title><link rel="stylesheet" href="${ctx.base}/portal.css"></head>
<body><header><a href="${ctx.base}/devices"><strong>Device activation</strong></a><span>${
    user !== undefined
      ? html`Signed in as <span id="user">${user.name}</span> ${
          signOut === undefined
            ? ''
            : signOut.post
              ? html`<form method="post" action="${signOut.url}"><input type="hidden" name="_csrf" value="${ctx.csrf ?? ''}"><button type="submit">Sign out</button></form>`
              : html`<a href="${signOut.url}">Sign out</a>`
        }`
      : ''
  }</span></header>
<main>${body}</main></body></html>`.text;
}

const deviceUrl = (ctx: PageContext, id: string) => `${ctx.base}/devices/${encodeURIComponent(id)}`;

export function devicesPage(ctx: PageContext, devices: readonly DeviceKeyState[], query: string, exact: DeviceKeyState | undefined): string {
  return layout(
    ctx,
    'Devices awaiting activation',
    html`<h1>Devices awaiting activation</h1>
<form class="search" method="get" action="${ctx.base}/devices" role="search">
<label for="q">Device id</label> <input id="q" name="q" value="${query}" autocomplete="off" maxlength="128"> <button type="submit">Search</button>
</form>
${exact !== undefined && exact.enabled ? html`<p class="notice">${exact.id} is already active: <a href="${deviceUrl(ctx, exact.id)}">open it</a>.</p>` : ''}
${
  devices.length === 0
    ? html`<p id="empty">${query === '' ? 'No device is awaiting activation.' : html`No device awaiting activation matches “${query}”.`}</p>`
    : html`<table id="devices"><thead><tr><th>Device id</th><th>State</th></tr></thead><tbody>${devices.map(
        (d) => html`<tr><td><a href="${deviceUrl(ctx, d.id)}">${d.id}</a></td><td><span class="state awaiting">awaiting activation</span></td></tr>`,
      )}</tbody></table>`
}`,
  );
}

export interface DevicePageData {
  readonly device: DeviceKeyState;
  readonly provisioning?: ProvisioningRecord;
  readonly fields: FieldConfig;
  /** Values to show in the form (the submitted ones after a refusal, else the stored tags). */
  readonly values?: Readonly<Record<string, string>>;
  readonly errors?: FieldErrors;
  /** A refusal of the whole request (already active, changed meanwhile...). */
  readonly error?: string;
  readonly notice?: string;
}

function fieldInput(field: FieldSpec, value: string, error: string | undefined): Html {
  const id = `f-${field.name}`;
  const described = [field.hint !== undefined ? `${id}-hint` : '', error !== undefined ? `${id}-err` : ''].filter((s) => s !== '').join(' ');
  const common = html`id="${id}" name="${field.name}"${field.required ? html` required` : ''}${described !== '' ? html` aria-describedby="${described}"` : ''}${error !== undefined ? html` aria-invalid="true"` : ''}`;
  const control =
    field.enum !== undefined
      ? html`<select ${common}><option value="">—</option>${field.enum.map((c) => html`<option value="${c}"${c === value ? html` selected` : ''}>${c}</option>`)}</select>`
      : html`<input type="text" ${common} value="${value}" maxlength="${field.maxLength}">`;
  return html`<div class="field${error !== undefined ? ' invalid' : ''}"><label for="${id}">${field.label}${field.required ? ' *' : ''}</label>${control}${
    field.hint !== undefined ? html`<div class="hint" id="${id}-hint">${field.hint}</div>` : ''
  }${error !== undefined ? html`<div class="msg" id="${id}-err" role="alert">${error}</div>` : ''}<div class="hint">${
    field.target === 'desired' ? html`Twin desired property <code>${field.name}</code>` : html`Twin tag <code>${field.name}</code>`
  }</div></div>`;
}

export function devicePage(ctx: PageContext, data: DevicePageData): string {
  const { device, provisioning, fields } = data;
  const values = data.values ?? Object.fromEntries(fields.fields.map((f) => [f.name, device.tags[storeTagName(f)] ?? '']));
  const metadata = Object.entries(device.tags).filter(([name]) => name !== 'public-key-sha256' && name !== 'file-encoding');
  const formError = data.errors?.[''];
  return layout(
    ctx,
    device.id,
    html`<h1>Device <span id="device-id">${device.id}</span></h1>
${data.notice !== undefined ? html`<p class="notice" id="notice" role="status">${data.notice}</p>` : ''}
${data.error !== undefined ? html`<p class="error" id="error" role="alert">${data.error}</p>` : ''}
<dl><dt>State</dt><dd><span id="state" class="state ${device.enabled ? 'active' : 'awaiting'}">${device.enabled ? 'active' : 'awaiting activation'}</span></dd>
${provisioning !== undefined ? html`<dt>Provisioned</dt><dd id="provisioned">on ${provisioning.assignedHub} at ${provisioning.at}</dd>` : ''}
${metadata.map(([name, value]) => html`<dt>${name}</dt><dd>${value}</dd>`)}</dl>
${
  device.enabled
    ? html`<p><a href="${deviceUrl(ctx, device.id)}/revoke" id="revoke-link">Revoke this device…</a></p>`
    : html`<h2>Activate</h2>
<p>The device is admitted at its next registration, with these values in its twin.</p>
${formError !== undefined ? html`<p class="error" role="alert">${formError}</p>` : ''}
<form method="post" action="${deviceUrl(ctx, device.id)}/activate" id="activate" novalidate>
<input type="hidden" name="_csrf" value="${ctx.csrf ?? ''}"><input type="hidden" name="_version" value="${device.version}">
${fields.fields.map((f) => fieldInput(f, values[f.name] ?? '', data.errors?.[f.name]))}
<button class="primary" type="submit">Activate ${device.id}</button></form>`
}
<p><a href="${ctx.base}/devices">← Devices awaiting activation</a></p>`,
  );
}

export function revokePage(ctx: PageContext, device: DeviceKeyState, error?: string): string {
  return layout(
    ctx,
    `Revoke ${device.id}`,
    html`<h1>Revoke <span id="device-id">${device.id}</span>?</h1>
${error !== undefined ? html`<p class="error" id="error" role="alert">${error}</p>` : ''}
<p>Its key is disabled: the device is refused at its next registration and shows again as awaiting activation. Its
metadata is kept. A device already connected to its hub stays connected until it registers again.</p>
<form method="post" action="${deviceUrl(ctx, device.id)}/revoke" id="revoke">
<input type="hidden" name="_csrf" value="${ctx.csrf ?? ''}"><input type="hidden" name="_version" value="${device.version}"><input type="hidden" name="confirm" value="yes">
<button class="danger" type="submit">Yes, revoke ${device.id}</button> <a href="${deviceUrl(ctx, device.id)}">Cancel</a></form>`,
  );
}

export function messagePage(ctx: PageContext, title: string, message: string, link?: { href: string; text: string }): string {
  return layout(ctx, title, html`<h1>${title}</h1><p class="error" id="error" role="alert">${message}</p>${link !== undefined ? html`<p><a href="${link.href}" id="next">${link.text}</a></p>` : ''}`);
}
