"""``GET /``: a small page to try the served model by hand, and ``GET /v1/versions``.

Plain HTML and JavaScript in one string (no build step, no framework). The page reads
``GET /v1/versions`` (the query features, ``k``'s limit, the version served and the
versions present), shows one input per query feature, and posts to ``/v1/recommend``:
once, or once per version to compare two versions side by side. With "Explain" ticked
it asks for ``"explain": true`` and shows, next to each item, the history items that
contributed most and each score component's share. A link can carry the query
(``/?user_id=42&k=5&version=2&compare=3&explain=1`` runs it when the page opens).
"""

from __future__ import annotations

import html
import importlib
from typing import Any

from tfrs_kit.serving._server import Server
from tfrs_kit.serving._versions import available_versions

__all__ = ["PAGE", "add_page_routes", "describe"]


def describe(server: Server, name: str) -> dict[str, Any]:
    """What the page needs: features, their kinds, ``k``'s limit and the versions."""
    model = server.model
    served = model.version if model is not None else None
    present = available_versions(server.directory) if server.versioned else []
    if served is not None and served not in present:
        present = sorted({*present, served})
    spec = model.spec if model is not None else None
    return {
        "model": name,
        "served": served,
        "versions": present,
        "features": [{"name": f, "kind": spec.kinds[f], "dtype": spec.dtypes[f]}
                     for f in spec.features] if spec else [],
        "k_limit": spec.k_limit if spec else None,
        "id_kind": spec.id_kind if spec else None,
    }


def add_page_routes(api: Any, fastapi: Any, server: Server, name: str) -> None:
    """Adds ``GET /`` (the page) and ``GET /v1/versions`` (what the page reads)."""
    responses = importlib.import_module("fastapi.responses")
    page = PAGE.replace("{{MODEL}}", html.escape(name))

    @api.get("/", include_in_schema=False)
    async def index_page() -> Any:
        """The page: pick a user, see the top k, compare two versions."""
        return responses.HTMLResponse(page)

    @api.get("/v1/versions")
    async def versions() -> Any:
        """The version served, the versions present and the query features."""
        return describe(server, name)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{MODEL}} - tfrs_kit</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em; max-width: 60em; }
 label { display: block; margin: .4em 0; }
 input[type=text] { width: 24em; }
 .columns { display: flex; gap: 2em; }
 table { border-collapse: collapse; margin-top: .5em; }
 td, th { border-bottom: 1px solid #ddd; padding: .2em .8em; text-align: left; }
 .error { color: #b00020; }
 .muted { color: #666; }
</style>
</head>
<body>
<h1>{{MODEL}}</h1>
<p class="muted" id="status">Loading...</p>
<form id="query">
 <div id="features"></div>
 <label>k <input type="number" id="k" name="k" value="10" min="1"></label>
 <label>Version <select id="version-a"></select></label>
 <label><input type="checkbox" id="compare"> Compare with version
  <select id="version-b"></select></label>
 <label><input type="checkbox" id="explain"> Explain (the history items behind each item,
  and each component's share of its score)</label>
 <button type="submit">Recommend</button>
</form>
<div class="columns"><div id="result-a"></div><div id="result-b"></div></div>
<script>
"use strict";
let info = null;

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

function options(select, versions, chosen) {
  select.replaceChildren(...versions.map(v => {
    const o = text("option", String(v)); o.value = String(v); o.selected = v === chosen;
    return o;
  }));
}

async function load() {
  info = await (await fetch("v1/versions")).json();
  const status = document.getElementById("status");
  status.textContent = info.served === null ? "No version is loaded yet; reload soon."
    : `Serving version ${info.served}; versions present: ${info.versions.join(", ") || "-"}.`;
  const box = document.getElementById("features");
  box.replaceChildren(...info.features.map(f => {
    const label = text("label", f.name + (f.kind === "multi" ? " (ids, comma-separated) " : " "));
    const input = document.createElement("input");
    input.type = "text"; input.id = "feature-" + f.name; input.dataset.feature = f.name;
    label.appendChild(input);
    return label;
  }));
  if (info.k_limit) document.getElementById("k").max = info.k_limit;
  const versions = info.versions.length ? info.versions : [info.served];
  options(document.getElementById("version-a"), versions, info.served);
  options(document.getElementById("version-b"), versions, versions[0]);
}

function value(feature, raw) {
  const isInt = feature.dtype === "int64";
  const one = s => (isInt ? parseInt(s, 10) : s);
  if (feature.kind === "multi") return raw.split(",").map(s => s.trim()).filter(Boolean).map(one);
  if (feature.kind === "numeric" || feature.kind === "timestamp" || feature.kind === null)
    return Number(raw);
  return one(raw);
}

function body(version) {
  const out = {k: parseInt(document.getElementById("k").value, 10)};
  for (const f of info.features) {
    const raw = document.getElementById("feature-" + f.name).value.trim();
    if (raw !== "") out[f.name] = value(f, raw);
  }
  if (version !== null && version !== info.served) out.version = version;
  if (document.getElementById("explain").checked) out.explain = true;
  return out;
}

// "because of i3, i7 · towers 62%, ials 30%, popularity 8%"
function why(explanation) {
  const shares = Object.entries(explanation.shares)
    .map(([name, share]) => `${name} ${Math.round(100 * share)}%`).join(", ");
  const history = explanation.history.map(String).join(", ");
  return (history ? `because of ${history} · ` : "") + shares;
}

async function show(target, version) {
  const box = document.getElementById(target);
  const response = await fetch("v1/recommend", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body(version))});
  const answer = await response.json();
  if (!response.ok) { box.replaceChildren(text("p", answer.error, "error")); return; }
  const table = document.createElement("table");
  const head = document.createElement("tr");
  head.append(text("th", "#"), text("th", "id"), text("th", "score"));
  if (answer.explanations) head.appendChild(text("th", "why"));
  table.appendChild(head);
  answer.ids.forEach((id, i) => {
    const row = document.createElement("tr");
    row.append(text("td", String(i + 1)), text("td", String(id)),
               text("td", answer.scores[i].toFixed(4)));
    if (answer.explanations) row.appendChild(text("td", why(answer.explanations[i]), "muted"));
    table.appendChild(row);
  });
  box.replaceChildren(text("h2", `Version ${answer.version}`), table);
}

document.getElementById("query").addEventListener("submit", async event => {
  event.preventDefault();
  const a = parseInt(document.getElementById("version-a").value, 10);
  const b = parseInt(document.getElementById("version-b").value, 10);
  const compare = document.getElementById("compare").checked;
  await Promise.all([show("result-a", Number.isNaN(a) ? null : a),
    compare ? show("result-b", Number.isNaN(b) ? null : b)
            : Promise.resolve(document.getElementById("result-b").replaceChildren())]);
});

// A link may carry a query: ?user_id=42&k=5&version=2&compare=3&explain=1 runs it at once.
function fromLink() {
  const params = new URLSearchParams(window.location.search);
  let given = false;
  for (const f of info.features) {
    if (params.has(f.name)) {
      document.getElementById("feature-" + f.name).value = params.get(f.name); given = true;
    }
  }
  if (params.has("k")) document.getElementById("k").value = params.get("k");
  if (params.has("explain")) document.getElementById("explain").checked = true;
  if (params.has("version")) document.getElementById("version-a").value = params.get("version");
  if (params.has("compare")) {
    document.getElementById("compare").checked = true;
    document.getElementById("version-b").value = params.get("compare");
  }
  if (given) document.getElementById("query").requestSubmit();
}

load().then(fromLink).catch(error => {
  document.getElementById("status").replaceChildren(text("span", String(error), "error"));
});
</script>
</body>
</html>
"""
