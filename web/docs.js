// Renders /api/openapi.json for people: every operation with its
// parameters, request bodies and responses (status, headers, media types,
// schema names), then the schemas. No external renderer, no CDN.

const main = document.getElementById("api");

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function name(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  return schema.type ? String(schema.type) : "";
}

function resolve(doc, maybeRef) {
  if (!maybeRef?.$ref) return maybeRef;
  return maybeRef.$ref.split("/").slice(1).reduce((node, key) => node[key], doc);
}

const doc = await (await fetch("/api/openapi.json")).json();
main.replaceChildren(el("p", doc.info.description));
for (const [path, item] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(item)) {
    if (method === "parameters") continue;
    const section = el("section", undefined, { class: "card" });
    section.append(el("h2", `${method.toUpperCase()} ${path}`), el("p", op.summary ?? ""));
    const params = [...(item.parameters ?? []), ...(op.parameters ?? [])];
    if (params.length) {
      const list = el("ul");
      for (const p of params) list.append(el("li", `${p.in} ${p.name}${p.required ? " (required)" : ""}: ${name(p.schema)}`));
      section.append(el("h3", "Parameters"), list);
    }
    if (op.requestBody) {
      const list = el("ul");
      for (const [type, media] of Object.entries(op.requestBody.content)) list.append(el("li", `${type} ${name(media.schema)}`));
      section.append(el("h3", "Request body"), list);
    }
    const table = el("table");
    const head = el("tr");
    head.append(el("th", "status"), el("th", "what"), el("th", "headers"), el("th", "body"));
    table.append(head);
    for (const [code, raw] of Object.entries(op.responses)) {
      const r = resolve(doc, raw);
      const row = el("tr");
      row.append(el("td", code), el("td", r.description),
        el("td", Object.keys(r.headers ?? {}).join(", ")),
        el("td", Object.entries(r.content ?? {}).map(([t, m]) => `${t} ${name(m.schema)}`).join("; ")));
      table.append(row);
    }
    section.append(el("h3", "Responses"), table);
    main.append(section);
  }
}
main.append(el("h2", "Schemas"));
for (const [schemaName, schema] of Object.entries(doc.components.schemas)) {
  const section = el("section", undefined, { class: "card" });
  section.append(el("h3", schemaName), el("pre", JSON.stringify(schema, null, 2)));
  main.append(section);
}
