// Open ComfyUI's real frontend in headless Debian Chromium (playwright-core, no browser download), kept on
// loopback: every request that is not to the ComfyUI server is aborted.
//
// Needs playwright-core on NODE_PATH (scripts/comfyui.sh browser puts it in $COMFY_ROOT/pw/node_modules)
// and a Chromium at $CHROMIUM (default /usr/bin/chromium).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

async function openComfy(base, { width = 1600, height = 900 } = {}) {
  // Server-side settings first: no first-run template browser, no update toasts.
  const r = await fetch(base + '/settings', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ 'Comfy.TutorialCompleted': true, 'Comfy.Notification.ShowVersionUpdates': false }),
  });
  if (!r.ok) throw new Error('POST /settings -> ' + r.status);
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pixel-cascade-chromium-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width, height },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await ctx.addInitScript(() => { try { localStorage.setItem('vueNodesBannerDismissed', 'true'); } catch (e) {} });
  await ctx.route(u => !u.href.startsWith(base), route => route.abort());
  const page = ctx.pages()[0] || await ctx.newPage();
  const log = { console: [], network: [] };
  page.on('console', m => { if (m.type() === 'error') log.console.push(m.text()); });
  page.on('pageerror', e => log.console.push('pageerror: ' + e.message));
  page.on('requestfailed', q => {  // (the frontend aborts its optional user.css / templates look-ups itself)
    const why = (q.failure() || {}).errorText || '';
    if (q.url().startsWith(base) && !why.includes('ERR_ABORTED')) log.network.push(`FAILED ${q.url()} ${why}`);
  });
  page.on('response', q => { if (q.status() >= 500) log.network.push(q.status() + ' ' + q.url()); });
  await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => window.app && window.app.graph && window.app.canvas, null, { timeout: 60000 });
  const close = async () => { await ctx.close(); fs.rmSync(userDataDir, { recursive: true, force: true }); };
  return { page, log, close };
}

// Visible dialogs' and error notices' text. The missing-node report is a dialog in frontend 1.32 (ComfyUI
// 0.3.75: "This workflow has missing nodes") and a status notice in 1.49 (ComfyUI 0.33.0:
// div[role=status][data-testid=error-overlay], "Missing node: X ... View details").
const DIALOGS = '.p-dialog, [role="dialog"], [role="status"][data-testid="error-overlay"]';
async function visibleDialogs(page) {
  return page.evaluate(sel => [...document.querySelectorAll(sel)]
    .filter(d => d.offsetParent !== null || d.getClientRects().length > 0).map(d => d.innerText.slice(0, 300)),
  DIALOGS);
}

module.exports = { openComfy, visibleDialogs };
