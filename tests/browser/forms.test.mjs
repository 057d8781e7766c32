// The desk's forms as a browser sends them (the pages test only follows links): a form sent
// from a portal page must be taken as coming from the portal, whatever headers the browser
// adds on its own (Origin, Sec-Fetch-Site), and land on the next page.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { checkPage, launchBrowser, newContext, newPage, visit } from './lib.mjs';

const browser = await launchBrowser();
after(() => browser.close());

test('starting a practice from the service page leads to its task list', async () => {
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);
    await visit(page, '/servizi/avvio-ditta-individuale');
    const form = page.locator('main form[action="/pratiche"]');
    assert.equal(await form.count(), 1, 'the service page offers to start a practice');
    const [landing] = await Promise.all([
      page.waitForNavigation(),
      form.locator('button[type="submit"]').click(),
    ]);
    const heading = await page.locator('h1').innerText();
    const sent = await landing.request().allHeaders();
    assert.equal(
      landing.status(),
      200,
      `sending the form answered ${landing.status()} "${heading}"; the browser sent ` +
        `Origin: ${sent.origin}, Sec-Fetch-Site: ${sent['sec-fetch-site']}`,
    );
    assert.match(new URL(page.url()).pathname, /^\/pratiche\/[^/]+\/compila$/);
    await checkPage(page, 'forms-started-practice');
  } finally {
    await context.close();
  }
});
