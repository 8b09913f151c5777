// The demo page served by one server records to another, on another origin: with the page's
// origin in the API server's CORS_ALLOWED_ORIGINS it records and plays; without, the page
// says the server does not allow this origin.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FORMATS, checkPlayer, launchBrowser, log, openDemo, recordOnDemo, startServer } from './helpers.mjs';

describe('the page on one origin, the API on another', { timeout: 240_000 }, () => {
  const env = {};
  before(async () => {
    env.page = await startServer();
    env.allowing = await startServer({ CORS_ALLOWED_ORIGINS: env.page.base });
    env.refusing = await startServer();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    for (const s of [env.page, env.allowing, env.refusing]) await s?.stop();
  });

  for (const format of [FORMATS.vp8, FORMATS.h264]) {
    test(`listed in CORS_ALLOWED_ORIGINS: ${format.mode} upload records and plays`, { timeout: 90_000 }, async () => {
      const url = `${env.page.base}/?server=${encodeURIComponent(env.allowing.base)}`;
      const { context, page, consoleLines } = await openDemo(env.browser, url);
      try {
        const calls = [];
        page.on('request', (r) => calls.push(new URL(r.url()).origin));
        const rec = await recordOnDemo(page, { ...format, seconds: 4 });
        assert.equal(rec.error, null, `${rec.error}\n${consoleLines.join('\n')}`);
        assert.ok(calls.includes(env.allowing.base), 'the API calls went to the other origin');
        const player = await checkPlayer(page);
        log(`cross-origin ${format.mode}: recorded ${rec.recordedS.toFixed(3)} s, <video> ${player.duration.toFixed(3)} s`);
        assert.ok(Math.abs(player.duration - rec.recordedS) <= 0.5, `${player.duration} vs ${rec.recordedS}`);
      } finally {
        await context.close();
      }
    });
  }

  test('not listed: the page says the server does not allow its origin', { timeout: 60_000 }, async () => {
    const url = `${env.page.base}/?server=${encodeURIComponent(env.refusing.base)}`;
    const { context, page } = await openDemo(env.browser, url);
    try {
      await page.selectOption('#mode', 'server');
      await page.click('#start');
      await page.waitForSelector('#error:not([hidden])', { timeout: 30_000 });
      const message = await page.textContent('#error-message');
      log(`cross-origin refused: ${message}`);
      assert.match(message, /does not allow this page's origin/);
      assert.match(message, /CORS_ALLOWED_ORIGINS/);
    } finally {
      await context.close();
    }
  });
});
