// Dev tool: build a UI workflow (what the canvas loads and the template browser lists) from an API workflow,
// with the real frontend, so node sizes, widget order and link ids are the frontend's own.
//
//   COMFY_URL=http://127.0.0.1:8188 NODE_PATH=.comfy_runtime/pw/node_modules \
//     node scripts/browser/workflow_ui.js workflows/api/cascade_64_256.json workflows/cascade_64_256.json
//
// The server must have this pack loaded (model names need not exist there). Seeds get control "fixed".
// Layout: if <out> exists, its node positions, sizes and the canvas view are kept (tidy by hand once, regenerate
// freely); new nodes go in columns, each as far right as its consumers allow (inputs flow left to right).
const fs = require('fs');
const { openComfy } = require('./comfy_page');

const GAP_X = 60, GAP_Y = 40, TITLE = 30;

function columns(api) {
  const ids = Object.keys(api);
  const sources = id => Object.values(api[id].inputs).filter(v => Array.isArray(v)).map(v => String(v[0]));
  const consumers = id => ids.filter(o => sources(o).includes(id));
  const early = {};  // longest path from a source
  const asap = id => (early[id] ??= Math.max(-1, ...sources(id).map(asap)) + 1);
  ids.forEach(asap);
  const late = {};   // as late as its consumers allow; sinks stay where they are
  const alap = id => (late[id] ??= consumers(id).length ? Math.min(...consumers(id).map(alap)) - 1 : early[id]);
  ids.forEach(alap);
  return late;
}

// loadApiJson connects every link twice (before and after arranging): number the surviving ones 1..n
function renumberLinks(ui) {
  const ids = new Map(ui.links.map((l, i) => [l[0], i + 1]));
  for (const l of ui.links) l[0] = ids.get(l[0]);
  for (const n of ui.nodes) {
    for (const i of n.inputs || []) if (i.link != null) i.link = ids.get(i.link);
    for (const o of n.outputs || []) if (o.links) o.links = o.links.map(id => ids.get(id));
  }
  ui.last_link_id = ui.links.length;
}

(async () => {
  const [apiPath, outPath] = process.argv.slice(2);
  const api = JSON.parse(fs.readFileSync(apiPath, 'utf8'));
  const { page, close } = await openComfy(process.env.COMFY_URL || 'http://127.0.0.1:8188');
  const col = columns(api);
  const old = fs.existsSync(outPath) ? JSON.parse(fs.readFileSync(outPath, 'utf8')) : { nodes: [] };
  const kept = Object.fromEntries(old.nodes.map(n => [n.id, n]));
  const ui = await page.evaluate(async ({ api, col, kept, GAP_X, GAP_Y, TITLE }) => {
    await window.app.loadApiJson(api, 'workflow');
    const g = window.app.graph;
    for (const n of g._nodes) {
      for (const w of n.widgets || []) if (w.name === 'control_after_generate') w.value = 'fixed';
    }
    const byCol = {};
    for (const n of g._nodes) (byCol[col[n.id]] ??= []).push(n);
    let x = 0;
    for (const c of Object.keys(byCol).map(Number).sort((a, b) => a - b)) {
      const nodes = byCol[c].sort((a, b) => a.id - b.id);
      let y = 0;
      for (const n of nodes) { n.pos = [x, y + TITLE]; y += n.size[1] + TITLE + GAP_Y; }
      x += Math.max(...nodes.map(n => n.size[0])) + GAP_X;
    }
    for (const n of g._nodes) {
      const k = kept[n.id];
      if (k && k.type === n.type) { n.pos = [...k.pos]; n.size = [Math.max(k.size[0], n.size[0]), Math.max(k.size[1], n.size[1])]; }
    }
    g.setDirtyCanvas(true, true);
    return g.serialize();
  }, { api, col, kept, GAP_X, GAP_Y, TITLE });
  delete ui.id;  // a fresh id is given on each load
  renumberLinks(ui);
  ui.extra = { ds: (old.extra && old.extra.ds) || { scale: 0.75, offset: [100, 130] } };
  fs.writeFileSync(outPath, JSON.stringify(ui, null, 2) + '\n');
  console.log(`wrote ${outPath}: ${ui.nodes.length} nodes, ${ui.links.length} links`);
  await close();
})().catch(e => { console.error('FAILED:', e); process.exit(1); });
