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

test('after a failed save the focus is on the error summary, and checkboxes are large enough to hit', async () => {
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);
    await visit(page, '/servizi/avvio-ditta-individuale');
    await Promise.all([page.waitForNavigation(), page.locator('main form[action="/pratiche"] button[type="submit"]').click()]);
    const practice = new URL(page.url()).pathname.replace(/\/compila$/, '');
    await visit(page, `${practice}/sezioni/seat`);
    await page.locator('#campo-seat-cap').fill('123');
    const [answer] = await Promise.all([
      page.waitForNavigation(),
      page.locator('button[name="azione"][value="continua"]').click(),
    ]);
    assert.equal(answer.status(), 422, 'the invalid CAP is refused');
    const focused = await page.evaluate(() => document.activeElement?.className ?? '');
    assert.match(focused, /\berror-summary\b/, `the focus is on ${focused || 'nothing'}, not on the error summary`);
    await checkPage(page, 'forms-failed-save');

    await visit(page, '/deleghe/nuova');
    const boxes = page.locator('main input[type="checkbox"]');
    assert.ok((await boxes.count()) > 0, 'the grant form has checkboxes');
    for (const box of await boxes.all()) {
      const size = await box.boundingBox();
      assert.ok(size && size.width >= 24 && size.height >= 24, `a checkbox of ${size?.width}×${size?.height} px`);
    }
  } finally {
    await context.close();
  }
});
