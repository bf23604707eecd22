// The service's own connect page (`GET /`) in sandbox mode, in a real browser: sign in as the
// demo user, connect Google, refresh it, connect Notion, disconnect Google.
//
// Settings (environment): SERVICE_URL (the service's PUBLIC_BASE_URL, as the browser opens it),
// SCREENSHOT_DIR, CHROMIUM. Screenshots: connect-page-signed-out.png, connect-page-providers.png,
// connect-page.png (Google connected: the one the README shows), connect-page-refreshed.png,
// connect-page-two-connections.png, connect-page-disconnected.png.
// Exits 1 with a message on the first failed expectation.

import { expect, run, screenshots, setting, softly, step, vouch, watch, within } from './support.mjs';

const service = new URL(setting('SERVICE_URL'));
const home = new URL('/', service).href;
const shoot = screenshots();

/** The row of `provider` in the connections table. */
const rowOf = (page, provider) => page.locator(`#integrations tr[data-integration][data-provider="${provider}"]`);

/** Waits until `provider`'s row shows `status`; fails naming what it shows instead. */
async function expectStatus(page, provider, status) {
  const badge = rowOf(page, provider).locator('.status');
  try {
    await badge.filter({ hasText: new RegExp(`^${status}$`) }).waitFor({ timeout: 10000 });
  } catch {
    const shown = await badge.innerText({ timeout: 1000 }).catch(() => '(no row)');
    expect(false, `the ${provider} row's status is ${status}, not ${shown}`);
  }
}

/** Waits until the notice says something matching `pattern`; fails naming what it says instead. */
async function expectNotice(page, pattern, what) {
  const notice = page.locator('#notice');
  try {
    await notice.filter({ hasText: pattern }).waitFor({ state: 'visible', timeout: 10000 });
  } catch {
    const said = await notice.innerText({ timeout: 1000 }).catch(() => '(no notice)');
    expect(false, `the notice says ${what} (${pattern}), not: ${said}`);
  }
  const kind = await notice.getAttribute('class');
  expect(/\bsuccess\b/.test(kind || ''), `the notice is a success, not "${kind}"`);
}

/** Clicks `provider`'s Connect button, approves at the sandbox provider, and comes back to `/`. */
async function connect(page, provider, emulator) {
  step(`connect ${provider}: its Connect button, then Approve at the sandbox provider`);
  await page.locator(`#providers button[data-provider="${provider}"]`).click();
  const approve = page.getByRole('button', { name: 'Approve' });
  await within(approve.waitFor({ timeout: 10000 }), `no consent page with an Approve button after Connect ${provider} (at ${page.url()})`);
  expect(new URL(page.url()).pathname.startsWith(`/_sandbox/${emulator}/`), `the consent page is the ${emulator} emulator's, not ${page.url()}`);
  await approve.click();
  await within(
    page.waitForURL((url) => url.origin === service.origin && url.pathname === '/', { timeout: 10000 }),
    `after approving ${provider} the browser comes back to ${home}`,
  );
  await expectNotice(page, new RegExp(`Connected ${provider}`, 'i'), `${provider} is connected`);
  await expectStatus(page, provider, 'active');
  // The page forgets the callback's query once it has shown it (a reload shows no stale notice).
  expect(new URL(page.url()).search === '', `the page drops ?oauth_status from its address: ${page.url()}`);
}

await run(async (browser, errors) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  watch(page, 'connect page', errors);

  step(`open ${home} in a fresh browser`);
  await within(page.goto(home), `opening ${home}`);
  const signIn = page.getByRole('button', { name: 'Sign in as the demo user' });
  await within(signIn.waitFor({ timeout: 10000 }), 'a signed-out browser is offered "Sign in as the demo user" in sandbox mode');
  await shoot(page, 'connect-page-signed-out.png');

  step('sign in as the demo user');
  await signIn.click();
  await within(page.locator('#providers button[data-provider="google"]').waitFor({ timeout: 10000 }), 'signed in, the page lists the providers');
  const who = await page.locator('#who').innerText();
  expect(who.includes('demo@example.com'), `the page says who is signed in: ${who}`);
  const cookies = await context.cookies(home);
  expect(cookies.some((cookie) => cookie.name === 'access_token' && cookie.httpOnly), 'the sign-in set the HttpOnly access_token cookie');
  for (const provider of ['google', 'microsoft', 'notion', 'youtube']) {
    const button = page.locator(`#providers button[data-provider="${provider}"]`);
    expect(await button.isEnabled(), `the sandbox's ${provider} can be connected`);
  }
  expect(await page.locator('#no-integrations').isVisible(), 'a new user has no connections yet');
  await shoot(page, 'connect-page-providers.png');

  step("the page's own links lead somewhere");
  for (const link of await page.locator('a[href]').all()) {
    const href = new URL(await link.getAttribute('href'), home).href;
    const text = (await link.innerText()).trim();
    await softly(async () => {
      const answer = await page.request.get(href, { headers: { accept: 'text/html,*/*' }, maxRedirects: 5 });
      expect(answer.ok(), `the page's link "${text}" (${href}) answers ${answer.status()}`);
    });
  }

  await connect(page, 'google', 'google');
  const account = await rowOf(page, 'google').locator('.account').innerText();
  expect(account.includes('@'), `the google row names the account's e-mail: ${account}`);
  const scopes = await rowOf(page, 'google').locator('.scopes').innerText();
  expect(scopes.includes('openid') && scopes.includes('email'), `the google row lists the granted scopes: ${scopes}`);
  await shoot(page, 'connect-page.png');
  vouch('connect-page.png');

  step('refresh google');
  await rowOf(page, 'google').getByRole('button', { name: 'Refresh' }).click();
  await expectNotice(page, /refreshed/i, 'the token was refreshed');
  await expectStatus(page, 'google', 'active');
  await shoot(page, 'connect-page-refreshed.png');

  await connect(page, 'notion', 'notion');
  await expectStatus(page, 'google', 'active');
  await shoot(page, 'connect-page-two-connections.png');

  step('disconnect google');
  await rowOf(page, 'google').getByRole('button', { name: 'Disconnect' }).click();
  await expectStatus(page, 'google', 'revoked');
  await expectStatus(page, 'notion', 'active');
  const disabled = await rowOf(page, 'google').getByRole('button', { name: 'Refresh' }).isDisabled();
  expect(disabled, 'a revoked connection cannot be refreshed from the page');
  const notice = await page.locator('#notice').innerText();
  expect(!/failed/i.test(notice), `the disconnect succeeded: ${notice}`);
  await shoot(page, 'connect-page-disconnected.png');
});
