// The product's frontend (a React app) connecting Google exactly as it calls the API, in a real
// browser: the JWT in localStorage, `axios.post(VITE_API_URL + '/api/v1/oauth/initiate', ...)`
// with a Bearer header and no credentials, then `window.location.href = authorization_url`.
// Its UI is not replicated, only its calls.
//
// Two topologies (TOPOLOGY):
//   cross-origin  the page on its own origin (APP_URL, served here), the API on the service's
//                 (VITE_API_URL = the service's PUBLIC_BASE_URL; OAUTH_ALLOWED_RETURN_ORIGINS
//                 names APP_URL's origin). The answer's authorization_url is the service's
//                 handoff link, which binds the first browser that opens it.
//   same-origin   a reverse proxy here (APP_URL, the service's PUBLIC_BASE_URL) serves the page
//                 and forwards /api/ and /_sandbox/ to SERVICE_URL, status, Location and
//                 Set-Cookie untouched; VITE_API_URL = APP_URL.
//
// Settings (environment): TOPOLOGY, APP_URL (where this script serves), VITE_API_URL,
// SERVICE_URL (the service's listening address, for the proxy and this script's own checks),
// OAM_JWT (the host application's access token of an existing user), SCREENSHOT_DIR,
// GOOGLE_SCOPES (default "openid email profile", Google's default scopes), CHROMIUM.
// Exits 1 with a message on the first failed expectation.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import axios from 'axios';
import { expect, run, screenshots, setting, softly, step, vouch, watch, within } from './support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const topology = setting('TOPOLOGY');
expect(['cross-origin', 'same-origin'].includes(topology), `TOPOLOGY must be cross-origin or same-origin, not ${topology}`);
const appUrl = new URL(setting('APP_URL'));
const apiUrl = setting('VITE_API_URL').replace(/\/$/, '');
const serviceUrl = new URL(setting('SERVICE_URL'));
const jwt = setting('OAM_JWT');
const scopes = setting('GOOGLE_SCOPES', 'openid email profile').split(/\s+/);
const shoot = screenshots();
const name = (base) => `${base}-${topology}.png`;

// The frontend's build: what Vite would compile in (import.meta.env.VITE_API_URL), its code, and
// axios's browser bundle from node_modules.
const axiosBundle = fs.readFileSync(path.join(here, 'node_modules/axios/dist/axios.min.js'));
const envScript = `window.__ENV__ = ${JSON.stringify({ VITE_API_URL: apiUrl, DEFAULT_SCOPES: scopes })};\n`;
// The host application's login stores its token; here the page stores the one it was given.
const loginScript = `window.__LOGIN_TOKEN__ = ${JSON.stringify(jwt)};\n`;

const appScript = `
"use strict";
const { VITE_API_URL, DEFAULT_SCOPES } = window.__ENV__;
if (!localStorage.getItem("access_token")) localStorage.setItem("access_token", window.__LOGIN_TOKEN__);
const authHeaders = () => ({ Authorization: "Bearer " + localStorage.getItem("access_token") });

function report(error) {
  const box = document.getElementById("error");
  box.textContent = error.response
    ? "HTTP " + error.response.status + ": " + JSON.stringify(error.response.data)
    : "no answer: " + error.message;
  box.hidden = false;
}

// The integrations settings page's "Connect Google" button.
async function connect(provider) {
  try {
    const response = await axios.post(
      VITE_API_URL + "/api/v1/oauth/initiate",
      { provider, scopes: DEFAULT_SCOPES, redirect_uri: VITE_API_URL + "/api/v1/oauth/callback" },
      { headers: authHeaders() },
    );
    window.location.href = response.data.authorization_url;
  } catch (error) {
    report(error);
  }
}

// The list of connections the settings page shows.
async function listIntegrations() {
  try {
    const response = await axios.get(VITE_API_URL + "/api/v1/oauth/integrations", { headers: authHeaders() });
    const list = document.getElementById("integrations");
    list.replaceChildren();
    for (const integration of response.data) {
      const item = document.createElement("li");
      item.dataset.provider = integration.provider;
      item.dataset.status = integration.status;
      item.textContent = integration.display_name + ": " + integration.status;
      list.append(item);
    }
    document.getElementById("loaded").hidden = false;
  } catch (error) {
    report(error);
  }
}

document.getElementById("connect-google").addEventListener("click", () => connect("google"));
listIntegrations();
`;

const indexHtml = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The product: integrations</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}#error{color:#b00020}</style></head>
<body>
  <h1>The product: integrations</h1>
  <button id="connect-google" type="button">Connect Google</button>
  <p id="error" role="alert" hidden></p>
  <p id="loaded" hidden>Your connections:</p>
  <ul id="integrations"></ul>
  <script src="/vendor/axios.min.js"></script>
  <script src="/env.js"></script>
  <script src="/login.js"></script>
  <script src="/app.js"></script>
</body></html>
`;

function serveApp(request, response) {
  const { pathname } = new URL(request.url, appUrl);
  const send = (type, body) => {
    response.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    response.end(body);
  };
  if (pathname === '/vendor/axios.min.js') return send('text/javascript', axiosBundle);
  if (pathname === '/env.js') return send('text/javascript', envScript);
  if (pathname === '/login.js') return send('text/javascript', loginScript);
  if (pathname === '/app.js') return send('text/javascript', appScript);
  // A single-page app's server: every other path is the app.
  return send('text/html; charset=utf-8', indexHtml);
}

// The same-origin topology's reverse proxy: /api/ and /_sandbox/ go to the service as they came
// (method, path, headers), and its answer comes back as it is (status, every header in its raw
// form, so each Set-Cookie stays its own header, and Location untouched).
function forward(request, response) {
  const upstream = http.request(
    {
      host: serviceUrl.hostname,
      port: serviceUrl.port,
      method: request.method,
      path: request.url,
      headers: request.headers,
    },
    (answer) => {
      response.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
      answer.pipe(response);
    },
  );
  upstream.on('error', (error) => {
    response.writeHead(502, { 'content-type': 'text/plain' });
    response.end(`proxy: ${error.message}`);
  });
  request.pipe(upstream);
}

const server = http.createServer((request, response) => {
  const proxied = topology === 'same-origin' && /^\/(api|_sandbox)\//.test(request.url);
  return proxied ? forward(request, response) : serveApp(request, response);
});
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(appUrl.port), '127.0.0.1', resolve);
});
step(`${topology}: the app serves ${appUrl.origin}; its API is ${apiUrl}`);

/** The service's answer to `GET /integrations` with the JWT, asked directly (not through a page). */
async function integrationsSeenByTheApi() {
  const answer = await axios.get(`${serviceUrl.origin}/api/v1/oauth/integrations`, {
    headers: { Authorization: `Bearer ${jwt}` },
    validateStatus: () => true,
  });
  expect(answer.status === 200, `GET /integrations answered ${answer.status}: ${JSON.stringify(answer.data)}`);
  return answer.data;
}

/**
 * Opens `link` in a browser of its own (no cookies, no history) and expects the service's refusal
 * page: a 400 HTML page (a browser, not an API client) saying "Not connected" with one of `codes`.
 */
async function expectRefusedElsewhere(browser, link, codes, errors, label, screenshot) {
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, label, errors);
  const answer = await within(page.goto(link), `opening the authorization link in the ${label}`);
  if (screenshot) await shoot(page, screenshot);
  const text = await page.locator('body').innerText();
  const type = answer.headers()['content-type'] || '';
  expect(answer.status() === 400, `the ${label} opening the link is refused with 400, not ${answer.status()}: ${text}`);
  expect(type.startsWith('text/html'),
    `the ${label} navigating to the link gets an HTML page, not ${type}: ${text.slice(0, 300)}`);
  const heading = await page.locator('h1').innerText({ timeout: 2000 }).catch(() => '(no heading)');
  expect(heading === 'Not connected', `the ${label}'s page says "Not connected", not ${heading}`);
  const code = await page.locator('.code code').innerText({ timeout: 2000 }).catch(() => '(no code)');
  expect(codes.includes(code), `the ${label}'s page names the error ${codes.join(' or ')}, not ${code}`);
  await context.close();
}

await run(async (browser, errors) => {
  const context = await browser.newContext();
  const page = await context.newPage();
  watch(page, 'app', errors);

  step(`open the app at ${appUrl.href}`);
  await within(page.goto(appUrl.href), `opening the app at ${appUrl.href}`);
  await within(page.locator('#loaded').waitFor({ timeout: 10000 }), 'the app lists the connections through the API (CORS?)');
  const stored = await page.evaluate(() => localStorage.getItem('access_token'));
  expect(stored === jwt, 'the app keeps the JWT in localStorage');

  step('click "Connect Google": axios.post(/initiate), then window.location.href = authorization_url');
  const initiated = page.waitForResponse((r) => r.url() === `${apiUrl}/api/v1/oauth/initiate` && r.request().method() === 'POST');
  // The page leaves as soon as it has the answer, so its body is gone by then: the link it
  // followed is the first navigation after the click.
  const followed = page.waitForRequest((r) => r.isNavigationRequest() && r.frame() === page.mainFrame());
  await page.click('#connect-google');
  const initiateAnswer = await within(initiated, 'POST /initiate was never answered');
  if (initiateAnswer.status() !== 200) {
    const shown = await page.locator('#error').innerText({ timeout: 2000 }).catch(() => '');
    expect(false, `POST /initiate answered ${initiateAnswer.status()}: ${shown}`);
  }
  const link = (await within(followed, 'the app never followed authorization_url')).url();
  step(`the app followed authorization_url ${link}`);

  step('the browser reaches the sandbox consent page');
  const approve = page.getByRole('button', { name: 'Approve' });
  await within(approve.waitFor({ timeout: 10000 }), `no consent page with an Approve button (at ${page.url()})`);
  const consentUrl = new URL(page.url());
  expect(consentUrl.pathname.startsWith('/_sandbox/google/'), `the consent page is the Google emulator's, not ${page.url()}`);
  const state = consentUrl.searchParams.get('state');
  if (topology === 'cross-origin') {
    const handoff = `${apiUrl}/api/v1/oauth/handoff/${state}`;
    expect(link === handoff, `from another origin the authorization_url is the handoff link ${handoff}, not ${link}`);
  } else {
    const provider = `${appUrl.origin}/_sandbox/google/`;
    expect(link.startsWith(provider), `from the service's own origin the authorization_url is the provider's (${provider}...), not ${link}`);
  }
  await shoot(page, name('consent'));

  // RFC 9700 §4.7: the browser now holds the flow cookie, for the callback's path only (set by
  // /initiate through the proxy, or by the handoff link on the service's origin).
  const callbackUrl = `${apiUrl}/api/v1/oauth/callback`;
  const flowCookies = (await context.cookies(callbackUrl)).filter((cookie) => cookie.name.startsWith('oam_flow_'));
  expect(flowCookies.length === 1, `the browser holds one flow cookie for ${callbackUrl}: ${JSON.stringify(await context.cookies())}`);
  const [flowCookie] = flowCookies;
  expect(flowCookie.httpOnly && flowCookie.sameSite === 'Lax' && flowCookie.path === '/api/v1/oauth',
    `the flow cookie is HttpOnly, SameSite=Lax, Path=/api/v1/oauth: ${JSON.stringify(flowCookie)}`);

  if (topology === 'cross-origin') {
    // RFC 9700 §4.7: the link is bound to the first browser; a forwarded copy gets nothing.
    step('another browser opens the same authorization link while the first is at the consent page');
    await softly(() => expectRefusedElsewhere(browser, link, ['handoff_used'], errors, 'second browser', 'handoff-refused.png'));
  }

  step('click Approve: the emulator sends the browser to the callback');
  const callbackPath = '/api/v1/oauth/callback';
  const callback = page.waitForResponse((r) => new URL(r.url()).pathname === callbackPath);
  await approve.click();
  const callbackAnswer = await within(callback, 'the browser never reached the callback');
  await page.waitForLoadState('load');
  const landed = new URL(page.url());
  expect(landed.origin === new URL(apiUrl).origin && landed.pathname === callbackPath,
    `the browser lands on the callback at ${apiUrl}${callbackPath}, not ${page.url()}`);
  expect(callbackAnswer.status() === 200, `the callback answered ${callbackAnswer.status()}`);
  const type = callbackAnswer.headers()['content-type'] || '';
  expect(type.startsWith('text/html'), `a browser gets an HTML page at the callback, not ${type}`);
  const message = await page.locator('body').innerText();
  expect(message.includes('Connected Google.'), `the callback page says "Connected Google.": ${message}`);
  // The page's stylesheet is the service's /assets/page.css: it must reach the browser in both topologies.
  const styled = await page.evaluate(() => [...document.styleSheets].some((sheet) => {
    try { return sheet.cssRules.length > 0; } catch { return false; }
  }));
  await shoot(page, name('callback'));
  await softly(async () => {
    if (styled) return;
    const sheet = await page.evaluate(() => document.querySelector('link[rel=stylesheet]')?.href);
    expect(false, `the callback page's stylesheet ${sheet} did not load: the page is unstyled`);
  });
  if (styled) vouch(name('callback'));

  const leftover = (await context.cookies(callbackUrl)).filter((cookie) => cookie.name === flowCookie.name);
  expect(leftover.length === 0, `the callback clears the spent flow cookie: ${JSON.stringify(leftover)}`);

  step('click "Back to the app"');
  await page.getByRole('link', { name: 'Back to the app' }).click();
  await within(page.waitForURL((url) => url.origin === appUrl.origin, { timeout: 10000 }), `"Back to the app" leads to ${appUrl.origin}`);
  const row = page.locator('#integrations li[data-provider="google"]');
  await within(row.waitFor({ timeout: 10000 }), 'back in the app, its list shows the Google connection');
  const shown = await row.getAttribute('data-status');
  expect(shown === 'active', `the app lists Google as active, not ${shown}`);
  await shoot(page, name('back-in-the-app'));

  step('GET /integrations with the JWT lists the connection');
  const integrations = await integrationsSeenByTheApi();
  const google = integrations.filter((integration) => integration.provider === 'google');
  expect(google.length === 1 && google[0].status === 'active', `one active google integration: ${JSON.stringify(integrations)}`);

  if (topology === 'cross-origin') {
    step('once the flow is finished, the link opens nothing anywhere');
    await softly(() => expectRefusedElsewhere(browser, link, ['handoff_used', 'state_used'], errors, 'late browser'));
  }
});
server.closeAllConnections();
server.close();
