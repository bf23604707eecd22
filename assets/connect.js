// The connect page: signs in (the host application's access_token cookie, or the sandbox's demo
// user), lists the providers and the user's connections, connects, refreshes and disconnects. It
// uses only the public API, with the browser's cookies (same origin), as the product's own pages
// would.
"use strict";

const API = "/api/v1/oauth";

async function call(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((data && data.detail) || response.statusText);
    error.status = response.status;
    error.code = data && data.code;
    throw error;
  }
  return data;
}

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function notice(message, kind) {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = "notice " + (kind || "");
  box.hidden = false;
}

function show(id, visible) {
  document.getElementById(id).hidden = !visible;
}

// What the callback said, when it sent the browser back here (?oauth_status=...); the provider's
// display name is filled in once the providers are known.
let returnedFrom = null;

function reportReturn() {
  const query = new URLSearchParams(location.search);
  const status = query.get("oauth_status");
  if (!status) return;
  if (status === "success") {
    returnedFrom = query.get("provider");
    notice(`Connected ${returnedFrom}.`, "success");
  } else {
    // Only a code's shape is shown: the query is anyone's to write.
    const code = query.get("error") || "";
    notice(/^[a-z_]{1,40}$/.test(code) ? `The connection failed: ${code}.` : "The connection failed.", "error");
  }
  history.replaceState(null, "", location.pathname);
}

function nameReturnedProvider(providers) {
  const provider = providers.find((candidate) => candidate.name === returnedFrom);
  if (provider) notice(`Connected ${provider.display_name}.`, "success");
  returnedFrom = null;
}

function renderProviders(providers) {
  const list = document.getElementById("providers");
  list.replaceChildren();
  for (const provider of providers) {
    const connect = element("button", { type: "button", "data-provider": provider.name }, `Connect ${provider.display_name}`);
    if (!provider.configured) {
      connect.disabled = true;
      connect.title = "No OAuth credentials are configured for this provider.";
    }
    connect.addEventListener("click", () => {
      const back = `${location.origin}/`;
      location.href = `${API}/connect/${encodeURIComponent(provider.name)}?return_to=${encodeURIComponent(back)}`;
    });
    list.append(element("li", { "data-provider": provider.name }, element("strong", {}, provider.display_name),
      element("p", {}, provider.description || ""), connect));
  }
}

function accountOf(integration) {
  const account = integration.account || {};
  return account.email || account.name || account.provider_user_id || "—";
}

function renderIntegrations(integrations) {
  const table = document.getElementById("integrations");
  const rows = table.querySelector("tbody");
  rows.replaceChildren();
  for (const integration of integrations) {
    const refresh = element("button", { type: "button", class: "secondary", onclick: () => refreshOne(integration) }, "Refresh");
    const disconnect = element("button", { type: "button", class: "danger", onclick: () => disconnectOne(integration) }, "Disconnect");
    if (integration.status === "revoked") {
      refresh.disabled = true;
      disconnect.disabled = true;
    }
    rows.append(element("tr", { "data-integration": String(integration.id), "data-provider": integration.provider },
      element("td", {}, integration.display_name || integration.provider),
      element("td", { class: "account" }, accountOf(integration)),
      element("td", {}, element("span", { class: `status ${integration.status}` }, integration.status.replace("_", " "))),
      element("td", { class: "scopes" }, (integration.scopes || []).join(" ")),
      element("td", { class: "expires" }, integration.expires_at ? new Date(integration.expires_at).toLocaleString() : "—"),
      element("td", { class: "actions" }, refresh, disconnect)));
  }
  table.hidden = integrations.length === 0;
  show("no-integrations", integrations.length === 0);
}

async function refreshOne(integration) {
  try {
    await call("POST", `${API}/integrations/${integration.id}/refresh`);
    notice(`Refreshed ${integration.display_name || integration.provider}.`, "success");
  } catch (error) {
    notice(`Refresh failed: ${error.message}`, "error");
  }
  await load();
}

async function disconnectOne(integration) {
  try {
    const answer = await call("DELETE", `${API}/integrations/${integration.id}?reason=user_request`);
    notice(answer.message || "Disconnected.", "success");
  } catch (error) {
    notice(`Disconnect failed: ${error.message}`, "error");
  }
  await load();
}

async function load() {
  let integrations;
  try {
    integrations = await call("GET", `${API}/integrations?active_only=false`);
  } catch (error) {
    if (error.status !== 401) {
      notice(error.message, "error");
      return;
    }
    show("signed-out", true);
    show("providers-section", false);
    show("integrations-section", false);
    try {
      await call("GET", "/_sandbox/sign-in");
      show("sandbox-sign-in", true);
    } catch (_) {
      show("sandbox-sign-in", false);
    }
    return;
  }
  show("signed-out", false);
  renderIntegrations(integrations.integrations || integrations);
  const providers = await call("GET", `${API}/providers`);
  const list = Array.isArray(providers) ? providers : providers.providers || [];
  renderProviders(list);
  nameReturnedProvider(list);
  show("providers-section", true);
  show("integrations-section", true);
}

async function signIn() {
  try {
    const session = await call("POST", "/_sandbox/sign-in");
    document.getElementById("who").textContent = `Signed in as ${session.email} (sandbox demo user)`;
    show("who", true);
    show("sign-out", true);
  } catch (error) {
    notice(`Sign-in failed: ${error.message}`, "error");
  }
  await load();
}

async function signOut() {
  await call("POST", "/_sandbox/sign-out").catch(() => {});
  show("who", false);
  show("sign-out", false);
  await load();
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("demo-sign-in").addEventListener("click", signIn);
  document.getElementById("sign-out").addEventListener("click", signOut);
  reportReturn();
  try {
    const session = await call("GET", "/_sandbox/sign-in");
    if (session && session.signed_in) {
      document.getElementById("who").textContent = `Signed in as ${session.email} (sandbox demo user)`;
      show("who", true);
      show("sign-out", true);
    }
  } catch (_) {
    // Not in sandbox mode: the host application's own sign-in applies.
  }
  await load();
});
