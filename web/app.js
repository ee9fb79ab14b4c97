// Darkroom's upload page: every picked or dropped image (or URL) becomes a
// card that follows its job live through the job's event stream (server-
// sent events), falling back to polling the status resource as each
// answer's Retry-After says (at most 2 s between looks) when streams are
// unavailable, until the job is completed, failed or cancelled. Refusals are
// shown from the problem's `detail`. Plain ES module, no build step,
// nothing loaded from elsewhere.

const jobs = document.getElementById("jobs");
const empty = document.getElementById("empty");
const picker = document.getElementById("file");
const drop = document.getElementById("pick");
const byUrl = document.getElementById("by-url");

const FINAL = new Set(["completed", "failed", "cancelled"]);
const REFUSALS = {
  413: "This file is too large.",
  415: "This is not an image Darkroom can read.",
  422: "This image cannot be processed.",
  503: "Darkroom is busy or briefly unavailable; try again in a moment.",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function size(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/// A card for one upload, and the functions that update it.
function card(title) {
  empty.hidden = true;
  const state = el("p", { class: "state", text: "uploading…" });
  const bar = el("progress", { max: "100", value: "0", "aria-label": `progress of ${title}` });
  const body = el("div", { class: "body" });
  const actions = el("div", { class: "actions" });
  const root = el("li", { class: "card", "data-state": "uploading", "data-seen": "" },
    el("h3", { text: title }), state, bar, body, actions);
  jobs.prepend(root);
  const seen = [];
  return {
    root, body, actions,
    show(status, stage, progress) {
      root.dataset.state = status;
      if (seen.at(-1) !== status) seen.push(status);
      root.dataset.seen = seen.join(" ");
      state.textContent = stage && !FINAL.has(status) ? `${status}: ${stage}` : status;
      if (typeof progress === "number") bar.value = progress;
      if (FINAL.has(status)) bar.value = 100;
    },
    refuse(message) {
      root.dataset.state = "refused";
      state.textContent = "refused";
      bar.remove();
      body.replaceChildren(el("p", { class: "error", role: "alert", text: message }));
    },
  };
}

async function problemText(response) {
  try {
    const problem = await response.json();
    const lead = REFUSALS[response.status] ?? `The upload was refused (${response.status}).`;
    return problem.detail ? `${lead} ${problem.detail}` : lead;
  } catch {
    return REFUSALS[response.status] ?? `The upload was refused (${response.status}).`;
  }
}

async function submit(view, request) {
  let response;
  try {
    response = await fetch("/api/images", { method: "POST", ...request });
  } catch {
    view.refuse("The upload did not reach Darkroom; check the connection and try again.");
    return;
  }
  if (response.status !== 202) {
    view.refuse(await problemText(response));
    return;
  }
  const accepted = await response.json();
  view.show("queued", "queued", 0);
  const events = accepted.links.status.replace(/status$/, "events");
  if ("EventSource" in window) stream(view, accepted.links.status, events, delay(response));
  else follow(view, accepted.links.status, delay(response));
}

const OUTPUT_PROGRESS = { thumbnail: 75, preview: 85, optimized: 95 };
const STAGE_PROGRESS = { fetching: 5, decoding: 10 };

/// Follows the job's event stream; the final status document is read once
/// the terminal event arrives. A stream that cannot be opened (or closes
/// for good) hands over to polling.
function stream(view, statusUrl, eventsUrl, wait) {
  const source = new EventSource(eventsUrl);
  let done = false;
  const on = (type, handle) => source.addEventListener(type, (e) => {
    view.root.dataset.events = `${Number(view.root.dataset.events ?? 0) + 1}`;
    handle(JSON.parse(e.data));
  });
  on("image.queued", () => view.show("queued", "queued", 0));
  on("image.processing", (d) => view.show("processing", d.stage, STAGE_PROGRESS[d.stage] ?? 10));
  on("image.output", (d) => view.show("processing", `${d.variant} stored`, OUTPUT_PROGRESS[d.variant]));
  on("image.retrying", (d) => view.show("queued", `retrying: ${d.error.code}`, 0));
  for (const type of ["image.completed", "image.failed", "image.cancelled"]) {
    on(type, () => {
      done = true;
      source.close();
      follow(view, statusUrl, 0);
    });
  }
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (with Last-Event-ID) unless closed.
    if (!done && source.readyState === EventSource.CLOSED) follow(view, statusUrl, wait);
  });
}

function delay(response) {
  const after = Number(response.headers.get("retry-after"));
  return Math.min(Number.isFinite(after) && after > 0 ? after : 1, 2) * 1000;
}

async function follow(view, statusUrl, wait) {
  await new Promise((r) => setTimeout(r, Math.min(wait, 500)));
  for (;;) {
    let response;
    try {
      response = await fetch(statusUrl, { headers: { accept: "application/json" } });
    } catch {
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (response.status === 404) {
      view.show("deleted");
      view.body.replaceChildren(el("p", { text: "This image is gone." }));
      view.actions.replaceChildren();
      return;
    }
    if (!response.ok) {
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    const status = await response.json();
    view.show(status.status, status.stage, status.progress);
    render(view, status);
    if (FINAL.has(status.status)) return;
    await new Promise((r) => setTimeout(r, delay(response)));
  }
}

function render(view, status) {
  const actions = [];
  if (!FINAL.has(status.status)) {
    actions.push(el("button", { type: "button", "data-action": "cancel", text: "Cancel" }));
  }
  actions.push(el("button", { type: "button", "data-action": "delete", text: "Delete" }));
  for (const button of actions) {
    button.addEventListener("click", () => act(view, status, button.dataset.action));
  }
  view.actions.replaceChildren(...actions);
  if (status.status === "failed") {
    view.body.replaceChildren(el("p", { class: "error", role: "alert", text: status.error?.message ?? "Processing failed." }));
  } else if (status.status === "completed") {
    const rows = [["original", status.original, status.links.original]]
      .concat(["thumbnail", "preview", "optimized"].map((n) => [n, status.outputs[n], status.links[n]]));
    const table = el("table", {},
      el("tr", {}, el("th", { text: "file" }), el("th", { text: "size" }), el("th", { text: "pixels" })),
      ...rows.map(([name, info, href]) => el("tr", {},
        el("td", {}, el("a", { href, download: "", text: name })),
        el("td", { text: info.saved_percent > 0 ? `${size(info.bytes)} (−${info.saved_percent}%)` : size(info.bytes) }),
        el("td", { text: `${info.width}×${info.height}` }))));
    const thumb = el("img", { class: "thumbnail", src: status.links.thumbnail, alt: "thumbnail", width: String(status.outputs.thumbnail.width), height: String(status.outputs.thumbnail.height) });
    const preview = el("a", { href: status.links.preview, text: "Open the preview" });
    view.body.replaceChildren(thumb, preview, table);
  } else if (status.status === "cancelled") {
    view.body.replaceChildren(el("p", { text: "Cancelled." }));
  }
}

async function act(view, status, action) {
  const url = action === "cancel" ? status.links.cancel : `/api/images/${status.id}`;
  const response = await fetch(url, { method: action === "cancel" ? "POST" : "DELETE" });
  if (action === "delete" && response.status === 204) {
    view.root.remove();
    empty.hidden = jobs.children.length > 0;
    return;
  }
  if (!response.ok) view.body.append(el("p", { class: "error", role: "alert", text: await problemText(response) }));
}

function upload(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    submit(card(file.name), { body: form });
  }
}

picker.addEventListener("change", () => {
  upload([...picker.files]);
  picker.value = "";
});
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  upload([...e.dataTransfer.files]);
});
byUrl.addEventListener("submit", (e) => {
  e.preventDefault();
  const url = byUrl.elements.url.value.trim();
  if (!url) return;
  submit(card(url), { headers: { "content-type": "application/json" }, body: JSON.stringify({ url }) });
  byUrl.reset();
});
