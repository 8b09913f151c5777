// A server that refuses chunks (MAX_CHUNK_BYTES at its minimum, 1024): the page says so and
// is ready for another try, in every upload mode.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ARTIFACTS, FORMATS, log, openDemo, useServerAndBrowser } from './helpers.mjs';
import path from 'node:path';

describe('a chunk over the server limit', { timeout: 180_000 }, () => {
  const env = useServerAndBrowser({ MAX_CHUNK_BYTES: '1024' });

  for (const format of Object.values(FORMATS)) {
    test(`${format.mode} upload: the page shows the refusal and does not hang`, { timeout: 60_000 }, async () => {
      const { context, page } = await openDemo(env.browser, env.server.base);
      try {
        await page.selectOption('#format', format.mimeType);
        await page.selectOption('#mode', format.mode);
        await page.click('#start');
        const shown = Date.now();
        await page.waitForSelector('#error:not([hidden])', { timeout: 20_000 });
        const message = await page.textContent('#error-message');
        log(`${format.mode}: error shown after ${Date.now() - shown} ms: ${message}`);
        assert.match(message, /refused part \d+ of the recording because it is too large/);
        assert.equal(await page.getAttribute('#state-pill', 'data-state'), 'failed');
        assert.equal(await page.isEnabled('#start'), true, 'the user can start again');
        assert.equal(await page.isDisabled('#stop'), true);
        assert.equal(await page.isHidden('#result'), true, 'no endless "processing"');
        if (format.mode === 'presigned') await page.screenshot({ path: path.join(ARTIFACTS, 'refused.png') });
        // The page still works: the error can be dismissed from the keyboard.
        await page.keyboard.press('Escape');
        assert.equal(await page.isHidden('#error'), true);
      } finally {
        await context.close();
      }
    });
  }
});
