// The side panel: class list, clicks, suggestions, scene tags, sub-cloud balls, progress. DOM only.

export const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "on") for (const [event, fn] of Object.entries(v)) node.addEventListener(event, fn);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

export const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

function swatch(colour) {
  const s = el("span", { class: "swatch" });
  s.style.background = rgb(colour);
  return s;
}

export function renderClasses(classes, current, onPick) {
  const list = $("class-list");
  list.replaceChildren(...classes.map((c) => el("li", {
    class: c.id === current ? "active" : "", "data-class": String(c.id), title: `class ${c.id}`,
    on: { click: () => onPick(c.id) },
  }, [el("span", { class: "key", text: c.id < 9 ? String(c.id + 1) : "" }), swatch(c.colour),
      el("span", { text: c.name })])));
}

export function renderClicks(clicks, classes, onDelete) {
  $("click-list").replaceChildren(...clicks.map((c) => el("li", { "data-point": String(c.point) }, [
    swatch(classes[c.class].colour),
    el("span", { text: `${classes[c.class].name} #${c.instance}` }),
    el("span", { class: "muted small", text: `point ${c.point}` }),
    el("button", { title: "delete this click", text: "\u00d7", on: { click: () => onDelete(c.point) } }),
  ])));
}

export function renderSuggestions(items, focused, classes) {
  $("suggestion-list").replaceChildren(...items.map((s, i) => el("li", { class: i === focused ? "focused" : "" }, [
    el("span", { text: `${i + 1}.` }),
    el("span", { text: `${s.size} pts, uncertainty ${s.uncertainty.toFixed(2)}` }),
    el("span", { class: "muted small", text: classes[s.predicted] ? classes[s.predicted].name : "?" }),
  ])));
}

export function renderChecklist(containerId, classes, ticked, prefix, onToggle) {
  $(containerId).replaceChildren(...classes.map((c) => {
    const box = el("input", { type: "checkbox", id: `${prefix}-${c.id}`, "data-class": String(c.id) });
    box.checked = ticked.has(c.id);
    box.addEventListener("change", () => onToggle(c.id, box.checked));
    return el("label", { for: `${prefix}-${c.id}` }, [box, swatch(c.colour), el("span", { text: c.name })]);
  }));
}

export function renderBalls(balls, tagged, selected, classes, onSelect) {
  const select = $("ball-select");
  select.replaceChildren(...balls.map((b, i) => {
    const names = (tagged[String(i)] || []).map((c) => classes[c].name).join(", ");
    return el("option", { value: String(i), text: `#${i}  ${b.points} pts${names ? "  \u2014 " + names : ""}` });
  }));
  select.value = selected === null ? "" : String(selected);
  select.onchange = () => onSelect(Number(select.value));
}

export function renderProgress(progress, current, classes) {
  const rows = progress.scenes.map((r) => el("tr", { class: r.scene === current ? "current" : "" }, [
    el("td", { text: r.done ? "\u2713" : "" }), el("td", { text: r.scene }),
    el("td", { text: `${r.clicks} clicks` }), el("td", { text: `${r.tags} tags` }),
    el("td", { text: `${r.balls} balls` }),
  ]));
  const chips = el("div", { class: "chips" }, progress.classes_seen.map((c) => {
    const chip = el("span", { text: classes[c].name });
    chip.style.background = rgb(classes[c].colour);
    return chip;
  }));
  $("progress").replaceChildren(
    el("div", { text: `${progress.done} / ${progress.total} scenes labelled, ${progress.saves} saves this session` }),
    el("table", { class: "progress" }, rows),
    el("div", { class: "muted small", text: "classes seen:" }), chips);
}

let statusTimer = null;
export function status(text, isError = false) {
  const node = $("status");
  node.textContent = text;
  node.className = isError ? "status error" : "status";
  clearTimeout(statusTimer);
  if (!isError) statusTimer = setTimeout(() => { node.textContent = ""; }, 4000);
}
