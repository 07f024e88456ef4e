// Load a UI workflow into ComfyUI's real frontend and report what the frontend made of it (JSON on stdout's
// last line): nodes (type, registered, has_errors), visible dialogs, graphToPrompt()'s API prompt, console
// and network problems. Saves a screenshot. With RUN_STEPS=n it then sets every 'steps' widget to n, presses
// Run (app.queuePrompt), waits for the server's verdict (RUN_TIMEOUT_S, default 120) and saves a second
// screenshot (<shot>_run.png).
// Driven by tests/server/test_browser_workflows.py.
//
//   COMFY_URL=... NODE_PATH=<dir with playwright-core> [RUN_STEPS=n] node ui_check.js <ui.json> <screenshot.png>
const fs = require('fs');
const path = require('path');
const { openComfy, visibleDialogs } = require(path.join(__dirname, '..', '..', 'scripts', 'browser', 'comfy_page'));

async function runFromUi(page, steps, shot) {
  const base = process.env.COMFY_URL;
  const before = new Set(Object.keys(await (await fetch(base + '/history')).json()));
  await page.evaluate(async steps => {
    for (const n of window.app.graph._nodes) for (const w of n.widgets || []) if (w.name === 'steps') w.value = steps;
    await window.app.queuePrompt(0, 1);
  }, steps);
  const polls = Number(process.env.RUN_TIMEOUT_S || 120) * 5;
  for (let i = 0; i < polls; i++) {
    await page.waitForTimeout(200);
    const history = await (await fetch(base + '/history')).json();
    const id = Object.keys(history).find(k => !before.has(k) && history[k].status && history[k].status.completed !== undefined);
    if (id) {
      await page.waitForTimeout(1000);  // let the image nodes show their outputs
      await page.screenshot({ path: shot.replace(/\.png$/, '_run.png') });
      return { status: history[id].status.status_str, outputs: history[id].outputs };
    }
  }
  return { status: 'timeout' };
}

(async () => {
  const [wfPath, shot] = process.argv.slice(2);
  const wf = JSON.parse(fs.readFileSync(wfPath, 'utf8'));
  const { page, log, close } = await openComfy(process.env.COMFY_URL);
  await page.evaluate(async wf => { await window.app.loadGraphData(wf); }, wf);
  await page.waitForTimeout(1000);  // dialogs and node error badges appear asynchronously
  const state = await page.evaluate(async () => {
    const g = window.app.graph;
    const reg = window.LiteGraph.registered_node_types;
    const nodes = g._nodes.map(n => ({ id: n.id, type: n.type, title: n.title, registered: !!reg[n.type],
                                        has_errors: !!n.has_errors }));
    return { nodes, frontend: window.__COMFYUI_FRONTEND_VERSION__, api: (await window.app.graphToPrompt()).output };
  });
  state.dialogs = await visibleDialogs(page);
  await page.screenshot({ path: shot });
  if (process.env.RUN_STEPS) state.run = await runFromUi(page, Number(process.env.RUN_STEPS), shot);
  state.console = log.console;
  state.network = log.network;
  await close();
  console.log(JSON.stringify(state));
})().catch(e => { console.error('FAILED:', e); process.exit(1); });
