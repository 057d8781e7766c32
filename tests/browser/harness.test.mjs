// The harness checks itself: checkPage() fails on a page made worse on purpose (so a green
// run means the checks ran), and a simulated institution's behaviour can be read, changed
// and put back.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import {
  checkPage,
  launchBrowser,
  newContext,
  newPage,
  setSimulatorBehaviour,
  simulatorBehaviour,
  simulators,
  visit,
  withSimulator,
} from './lib.mjs';

const browser = await launchBrowser();
after(() => browser.close());

test('checkPage reports axe violations, headings, the skip link, in-page links and reflow', async () => {
  const context = await newContext(browser, 'diprova');
  try {
    const page = await newPage(context);
    const response = await visit(page, '/accessibilita');
    await page.evaluate(() => {
      document.querySelector('.skip-link, a[href="#contenuto"]')?.remove();
      const main = document.querySelector('main');
      main.insertAdjacentHTML(
        'beforeend',
        '<img src="/static/sportello.css"><h1>Un altro titolo</h1><div id="largo">largo</div>'
          + '<a href="#da-nessuna-parte">link</a>',
      );
      // Through the CSSOM: the page's CSP refuses inline style attributes.
      document.getElementById('largo').style.width = '1000px';
    });
    await assert.rejects(checkPage(page, 'harness-made-worse', { response }), (error) => {
      const expected = [
        /axe image-alt/,
        /2 h1 elements/,
        /not a skip link/,
        /in-page links to nothing: #da-nessuna-parte/,
        /horizontal scroll at 320 px/,
      ];
      for (const pattern of expected) assert.match(error.message, pattern);
      return true;
    });
  } finally {
    await context.close();
  }
});

test('a simulated institution can be read, changed and put back', async () => {
  assert.deepEqual(Object.keys(simulators()).sort(), ['inail', 'inps', 'registro-imprese']);
  const before = await simulatorBehaviour('inps');
  assert.equal(before.down, false);
  await withSimulator('inps', { down: true }, async () => {
    assert.equal((await simulatorBehaviour('inps')).down, true);
  });
  assert.deepEqual(await simulatorBehaviour('inps'), before);
  assert.deepEqual(await setSimulatorBehaviour('inps', before), before);
});
