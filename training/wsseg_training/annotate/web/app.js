// wsseg annotate: the page. The server holds the annotation and saves it after every edit; this page
// shows one scene, sends clicks as rays (the server picks on the full cloud) and edits as operations.
import { View } from "./view.js";
import * as panels from "./panels.js";

const $ = panels.$;
const POLL_MS = 2000;

const app = {
  session: null, scene: null, info: null, index: 0, currentClass: 0, mode: null,
  base: null, labels: null, showLabels: true, suggestions: [], focused: -1, selectedBall: null, busy: 0,
  clipZ: Infinity,
};
window.wsseg = { app, ready: false };   // test and debugging hook (read-only use)

async function api(path, options = {}) {
  const response = await fetch(`/api/${path}`, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  const type = response.headers.get("Content-Type") || "";
  return type.includes("application/json") ? response.json() : response.arrayBuffer();
}

const post = (path, body = {}) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});
const scenePath = (what = "") => `scene/${encodeURIComponent(app.scene)}${what ? "/" + what : ""}`;

async function guarded(work) {
  app.busy += 1;
  try { return await work(); } catch (err) { panels.status(err.message, true); return null; } finally { app.busy -= 1; }
}

// ------------------------------------------------------------------------------------------- colours

function composeColours() {
  const n = app.base.length / 3;
  const out = new Uint8Array(app.base.length);
  const palette = app.session.classes.map((c) => c.colour);
  const overlay = app.showLabels && app.labels && app.session.kind === "clicks";
  for (let i = 0; i < n; i++) {
    const label = overlay ? app.labels[i] : -1;
    if (label >= 0) {
      out.set(palette[label], 3 * i);
    } else if (overlay) {
      for (let k = 0; k < 3; k++) out[3 * i + k] = 30 + app.base[3 * i + k] * 0.55;
    } else {
      for (let k = 0; k < 3; k++) out[3 * i + k] = app.base[3 * i + k];
    }
  }
  return out;
}

async function loadColours() {
  app.base = new Uint8Array(await api(scenePath(`colours?mode=${app.mode}`)));
  app.view.setColours(composeColours());
}

async function loadLabels() {
  if (app.session.kind !== "clicks") return;
  app.labels = new Int16Array(await api(scenePath("labels")));
  app.view.setColours(composeColours());
}

// ------------------------------------------------------------------------------------------- state

function applyAnswer(answer) {
  app.info.state = answer.state;
  app.info.revision = answer.revision;
  app.info.can_undo = answer.can_undo;
  app.info.can_redo = answer.can_redo;
  renderState();
}

function renderState() {
  const { state } = app.info;
  const classes = app.session.classes;
  $("undo").disabled = !app.info.can_undo;
  $("redo").disabled = !app.info.can_redo;
  if (app.session.kind === "clicks") {
    panels.renderClicks(state.clicks, classes, (point) => edit({ op: "delete_click", point }));
    app.view.setMarkers(app.view.markers, state.clicks.map((c) => ({ xyz: c.xyz, colour: classes[c.class].colour })));
  } else if (app.session.kind === "scene_tags") {
    panels.renderChecklist("tag-list", classes, new Set(state.tags), "tag",
                           (cls, on) => edit({ op: "set_tag", class: cls, on }));
  } else {
    renderBalls();
  }
  document.body.dataset.revision = String(app.info.revision);
}

function renderBalls() {
  const classes = app.session.classes;
  const tagged = app.info.state.balls;
  panels.renderBalls(app.info.balls, tagged, app.selectedBall, classes, selectBall);
  const ticked = new Set(app.selectedBall === null ? [] : tagged[String(app.selectedBall)] || []);
  panels.renderChecklist("ball-tags", app.selectedBall === null ? [] : classes, ticked, "ball-tag",
                         (cls, on) => edit({ op: "set_ball", ball: app.selectedBall, class: cls, on }));
  app.view.setBalls(app.info.balls.map((b, i) => ({
    centre: b.centre, selected: i === app.selectedBall,
    colour: i === app.selectedBall ? [255, 224, 102] : (tagged[String(i)] ? [120, 220, 140] : [160, 170, 180]),
  })), app.info.radius_m);
}

function selectBall(i) { app.selectedBall = i; renderBalls(); }

async function edit(op) {
  const answer = await guarded(() => post(scenePath("edit"), op));
  if (!answer) return;
  applyAnswer(answer);
  await loadLabels();
  await loadSuggestions();
  refreshProgress();
}

async function undoRedo(which) {
  const answer = await guarded(() => post(scenePath(which)));
  if (!answer) return;
  if (!answer.done) panels.status(`nothing to ${which}`);
  applyAnswer(answer);
  await loadLabels();
  await loadSuggestions();
  refreshProgress();
}

// ------------------------------------------------------------------------------------------- clicks

async function onViewClick(clickRay) {
  const kind = app.session.kind;
  const ray = { ...clickRay, max_z: Number.isFinite(app.clipZ) ? app.clipZ : null };
  if (kind === "scene_tags") { panels.status("scene tags: tick the classes in the panel"); return; }
  if (kind === "subcloud_tags") {
    const hit = await guarded(() => post(scenePath("pick"), ray));
    if (!hit || hit.point === null) return;
    const d2 = app.info.balls.map((b) => b.centre.reduce((s, v, k) => s + (v - hit.xyz[k]) ** 2, 0));
    selectBall(d2.indexOf(Math.min(...d2)));
    return;
  }
  const answer = await guarded(() => post(scenePath("click"), { ...ray, class: app.currentClass }));
  if (!answer) return;
  if (answer.point === null) { panels.status("no point under the cursor"); return; }
  panels.status(`${app.session.classes[app.currentClass].name}: point ${answer.point}`);
  applyAnswer(answer);
  await loadLabels();
  await loadSuggestions();
  refreshProgress();
}

async function loadSuggestions() {
  if (!app.session.model || app.session.kind !== "clicks" || !app.info.has_supervoxels) return;
  const answer = await guarded(() => api(scenePath("suggestions?count=5")));
  app.suggestions = answer ? answer.suggestions : [];
  app.focused = -1;
  showSuggestions();
}

function showSuggestions() {
  panels.renderSuggestions(app.suggestions, app.focused, app.session.classes);
  app.view.setMarkers(app.view.suggestionMarkers, app.suggestions.map((s, i) => ({
    xyz: s.xyz, colour: i === app.focused ? [255, 224, 102] : [255, 255, 255] })));
}

function nextSuggestion() {
  if (!app.suggestions.length) { panels.status("no suggestions (start with --model)"); return; }
  app.focused = (app.focused + 1) % app.suggestions.length;
  app.view.focus(app.suggestions[app.focused].xyz);
  showSuggestions();
}

async function acceptSuggestion() {
  const s = app.suggestions[app.focused];
  if (!s) return;
  await edit({ op: "add_click", point: s.point, class: app.currentClass });
}

function setupClip(bounds) {
  const slider = $("clip-z");
  slider.min = String(bounds[0][2]);
  slider.max = String(bounds[1][2] + 0.05);
  slider.value = slider.max;
  applyClip();
}

function applyClip() {
  const slider = $("clip-z");
  const z = Number(slider.value);
  app.clipZ = z >= Number(slider.max) ? Infinity : z;
  $("clip-z-value").textContent = Number.isFinite(app.clipZ)
    ? `z > ${(z + app.info.offset[2]).toFixed(2)} m hidden` : "nothing hidden";
  app.view.setClip(app.clipZ);
}

// ------------------------------------------------------------------------------------------- scenes

async function openScene(index) {
  app.index = (index + app.session.scenes.length) % app.session.scenes.length;
  app.scene = app.session.scenes[app.index];
  window.wsseg.ready = false;
  $("scene-select").value = app.scene;
  panels.status(`loading ${app.scene} ...`);
  const info = await guarded(() => api(scenePath()));
  if (!info) return;
  app.info = info;
  app.selectedBall = null;
  app.suggestions = [];
  const positions = new Float32Array(await api(scenePath("points")));
  const modeSelect = $("colour-mode");
  modeSelect.replaceChildren(...info.modes.map((m) => new Option(m, m)));
  app.mode = info.modes.includes(app.mode) ? app.mode : info.default_mode;
  modeSelect.value = app.mode;
  app.base = new Uint8Array(await api(scenePath(`colours?mode=${app.mode}`)));
  app.labels = null;
  app.view.setCloud(positions, new Uint8Array(app.base));
  app.view.fit(info.bounds);
  setupClip(info.bounds);
  $("scene-info").textContent = `${info.num_points.toLocaleString()} points (${info.display_points.toLocaleString()} drawn)`;
  const warning = $("warning");
  warning.hidden = info.has_supervoxels || app.session.kind !== "clicks";
  warning.textContent = "this scene has no super-voxels: a click labels its point only (1T1C needs " +
                        "`wsseg data supervoxels --data DATASET`)";
  renderState();
  await loadLabels();
  app.view.setMarkers(app.view.suggestionMarkers, []);
  await loadSuggestions();
  refreshProgress();
  panels.status(`${app.scene}`);
  window.wsseg.ready = true;
}

async function refreshProgress() {
  const progress = await guarded(() => api("progress"));
  if (!progress) return;
  panels.renderProgress(progress, app.scene, app.session.classes);
  const mine = progress.scenes.find((r) => r.scene === app.scene);
  // another tab (or this one) changed the scene: reload its state when the revision is not ours
  if (mine && app.info && mine.revision !== app.info.revision && !app.busy) {
    const info = await guarded(() => api(scenePath()));
    if (info) { Object.assign(app.info, info); renderState(); await loadLabels(); }
  }
}

// ------------------------------------------------------------------------------------------- keys

function setClass(id) {
  if (id < 0 || id >= app.session.classes.length) return;
  app.currentClass = id;
  panels.renderClasses(app.session.classes, id, setClass);
}

function onKey(e) {
  const tag = e.target.tagName;
  const typing = tag === "SELECT" || (tag === "INPUT" && !["checkbox", "range"].includes(e.target.type));
  if (typing || (tag === "BUTTON" && e.key === "Enter")) return;   // the control's own keys
  const ctrl = e.ctrlKey || e.metaKey;
  if (ctrl && e.key.toLowerCase() === "z") { e.preventDefault(); undoRedo(e.shiftKey ? "redo" : "undo"); return; }
  if (ctrl && e.key.toLowerCase() === "y") { e.preventDefault(); undoRedo("redo"); return; }
  if (ctrl) return;
  if (/^[1-9]$/.test(e.key)) { setClass(Number(e.key) - 1); return; }
  if (e.key === "[") openScene(app.index - 1);
  else if (e.key === "]") openScene(app.index + 1);
  else if (e.key === "n" || e.key === "N") nextSuggestion();
  else if (e.key === "Enter") acceptSuggestion();
  else if (e.key === "l" || e.key === "L") { $("show-labels").checked = !$("show-labels").checked; toggleLabels(); }
}

function toggleLabels() { app.showLabels = $("show-labels").checked; app.view.setColours(composeColours()); }

// ------------------------------------------------------------------------------------------- start

async function main() {
  app.view = new View($("canvas"), onViewClick);
  app.session = await guarded(() => api("session"));
  if (!app.session) return;
  const s = app.session;
  $("dataset").textContent = `${s.dataset} \u00b7 ${s.kind}${s.model ? " \u00b7 model " + s.model : ""}`;
  $("file").textContent = s.file;
  $("clicks-section").hidden = s.kind !== "clicks";
  $("tags-section").hidden = s.kind !== "scene_tags";
  $("balls-section").hidden = s.kind !== "subcloud_tags";
  $("suggestions-box").hidden = !s.model;
  $("scene-select").replaceChildren(...s.scenes.map((n) => new Option(n, n)));
  $("scene-select").addEventListener("change", (e) => openScene(s.scenes.indexOf(e.target.value)));
  $("prev-scene").addEventListener("click", () => openScene(app.index - 1));
  $("next-scene").addEventListener("click", () => openScene(app.index + 1));
  $("colour-mode").addEventListener("change", (e) => { app.mode = e.target.value; guarded(loadColours); });
  $("show-labels").addEventListener("change", toggleLabels);
  $("clip-z").addEventListener("input", applyClip);
  $("undo").addEventListener("click", () => undoRedo("undo"));
  $("redo").addEventListener("click", () => undoRedo("redo"));
  $("next-suggestion").addEventListener("click", nextSuggestion);
  window.addEventListener("keydown", onKey);
  setClass(0);
  window.wsseg.view = app.view;
  window.wsseg.setClass = setClass;
  window.wsseg.openScene = (name) => openScene(s.scenes.indexOf(name));
  await openScene(0);
  setInterval(refreshProgress, POLL_MS);
}

main();
