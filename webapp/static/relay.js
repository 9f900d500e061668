// Relay's admin pages: plain DOM, no dependencies. Every call carries a
// fresh session token from App Bridge (`shopify.idToken()`), or from the
// development stand-in outside the admin. Text from the server is set as
// text, never as HTML.
(function () {
  "use strict";

  const KEY_LABELS = {
    email: "Email",
    phone: "Phone",
    click_id: "Click id",
    ip_user_agent: "IP with user agent",
    external_id: "External id",
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "onclick") node.addEventListener("click", value);
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // Replaces a node's children; arrays are flattened, nulls left out.
  function put(target, ...children) {
    target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
    return target;
  }

  function fill(id, ...children) {
    return put(document.getElementById(id), ...children);
  }

  async function api(path, options) {
    const token = await window.shopify.idToken();
    const init = Object.assign({ method: "GET" }, options || {});
    init.headers = { Authorization: "Bearer " + token };
    if (init.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(init.json);
      delete init.json;
    }
    const response = await fetch(path, init);
    let body = {};
    try {
      body = await response.json();
    } catch (_) {
      body = {};
    }
    return { ok: response.ok, status: response.status, body: body };
  }

  function banner(kind, text) {
    return el("div", { class: "banner " + kind, role: kind === "critical" ? "alert" : "status" }, text);
  }

  function percent(share) {
    return share === null || share === undefined ? "–" : Math.round(share * 100) + "%";
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "never";
  }

  // -- overview: health ------------------------------------------------------

  async function loadHealth() {
    const { ok, body } = await api("/api/health");
    if (!ok) return fill("health", banner("critical", body.error || "Could not load."));
    const destinations = body.destinations.length
      ? el("ul", {}, body.destinations.map((d) =>
          el("li", {}, d.title + ": ", el("span", { class: "badge " + d.state }, d.state),
            d.test_mode ? " (test mode)" : "",
            d.reason ? el("p", { class: "help" }, d.reason) : null)))
      : el("p", { class: "subdued" }, "No destination set up yet.");
    const webhooks = body.webhooks.length
      ? el("ul", {}, body.webhooks.map((w) =>
          el("li", {}, w.topic + ": last received " + when(w.last_received))))
      : el("p", { class: "subdued" }, "No webhook received yet.");
    fill("health", el("h3", {}, "Destinations"), destinations,
      el("h3", {}, "Webhooks from Shopify"), webhooks);
  }

  // -- destinations: settings forms -----------------------------------------

  async function loadDestinations() {
    const { ok, body } = await api("/api/destinations");
    if (!ok) return fill("destination-forms", banner("critical", body.error || "Could not load."));
    fill("destination-forms", body.destinations.map(destinationForm));
  }

  function fieldId(dest, name) {
    return "f-" + dest + "-" + name;
  }

  function settingField(dest, field) {
    const id = fieldId(dest, field.name);
    const help = field.help ? el("p", { class: "help", id: id + "-help" }, field.help) : null;
    const error = el("p", { class: "field-error", id: id + "-error", hidden: true });
    const described = [help ? id + "-help" : null, id + "-error"].filter(Boolean).join(" ");
    if (field.choices.length && !field.multiple) {
      const chosen = field.value || field.default;
      return el("div", { class: "field" },
        el("label", { for: id }, field.label),
        el("select", { id: id, name: field.name, "aria-describedby": described },
          field.choices.map((choice) => el("option", { value: choice,
            selected: choice === chosen }, choice))),
        help, error);
    }
    if (field.choices.length) {
      const chosen = String(field.value || field.default || "").split(",");
      return el("fieldset", { class: "choices", id: id, "aria-describedby": described },
        el("legend", {}, field.label),
        field.choices.map((choice) => el("label", {},
          el("input", { type: "checkbox", name: field.name, value: choice,
            checked: chosen.includes(choice) }), choice)),
        help, error);
    }
    const secret = field.kind === "secret";
    const input = el("input", {
      id: id, name: field.name, type: secret ? "password" : "text",
      autocomplete: "off", "aria-describedby": described,
      required: field.required && !field.is_set,
      placeholder: secret ? (field.is_set ? "Saved. Leave empty to keep it." : null)
        : field.default,
    });
    if (!secret && field.value !== null && field.value !== undefined) input.value = field.value;
    return el("div", { class: "field" },
      el("label", { for: id }, field.label + (field.required ? " (required)" : "")),
      input, help, error);
  }

  function destinationForm(d) {
    const dest = d.destination;
    const main = d.fields.filter((f) => f.kind !== "url");
    const advanced = d.fields.filter((f) => f.kind === "url");
    const status = el("div", { id: "status-" + dest });
    const testAnswer = el("div", { id: "test-answer-" + dest });
    const form = el("form", { novalidate: true, "aria-labelledby": "title-" + dest },
      d.oauth ? el("div", { class: "actions" },
        el("button", { type: "button", onclick: () => connect(dest) },
          "Connect with " + d.title),
        el("span", { class: "subdued" },
          d.connected ? "Connected." : "Or enter the details by hand:")) : null,
      d.connected ? el("div", { id: "accounts-" + dest }) : null,
      main.map((f) => settingField(dest, f)),
      el("label", { class: "check" },
        el("input", { type: "checkbox", name: "test_mode", checked: d.test_mode }),
        "Test mode: " + d.title + " checks events and records nothing"),
      el("label", { class: "check" },
        el("input", { type: "checkbox", name: "enabled", checked: d.enabled }),
        "Send events to " + d.title),
      el("label", { for: fieldId(dest, "consent_policy") }, "Consent policy"),
      el("select", { id: fieldId(dest, "consent_policy"), name: "consent_policy" },
        el("option", { value: "standard", selected: d.consent_policy === "standard" },
          "Standard: send unless the visitor refused marketing"),
        el("option", { value: "strict", selected: d.consent_policy === "strict" },
          "Strict: send only with marketing consent from the visitor's browser")),
      el("label", { for: fieldId(dest, "conflict_policy") },
        "While another integration also sends purchases"),
      el("select", { id: fieldId(dest, "conflict_policy"), name: "conflict_policy" },
        el("option", { value: "send", selected: d.conflict_policy === "send" },
          "Keep sending purchases, flagged"),
        el("option", { value: "hold", selected: d.conflict_policy === "hold" },
          "Hold purchases back")),
      advanced.length ? el("details", {}, el("summary", {}, "Advanced"),
        advanced.map((f) => settingField(dest, f))) : null,
      el("div", { class: "actions" },
        el("button", { type: "submit", class: "primary" }, "Save"),
        el("button", { type: "button", onclick: () => sendTest(dest, d.title) },
          "Send test event")),
      status, testAnswer);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      save(dest, d, form);
    });
    if (d.connected) loadAccounts(dest);
    return el("div", { class: "destination" },
      el("h3", { id: "title-" + dest }, d.title,
        d.set_up ? null : el("span", { class: "subdued" }, " (not set up)")),
      d.paused ? banner("critical", "Paused: " + d.paused +
        ". Events are held, not lost; save new settings to send them.") : null,
      form);
  }

  function formBody(d, form) {
    const values = {};
    for (const field of d.fields) {
      if (field.multiple) {
        const boxes = form.querySelectorAll('input[name="' + field.name + '"]:checked');
        values[field.name] = Array.from(boxes, (box) => box.value).join(",");
      } else {
        values[field.name] = form.elements[field.name].value;
      }
    }
    return {
      values: values,
      test_mode: form.elements.test_mode.checked,
      enabled: form.elements.enabled.checked,
      consent_policy: form.elements.consent_policy.value,
      conflict_policy: form.elements.conflict_policy.value,
    };
  }

  function showErrors(dest, fields) {
    let first = null;
    document.querySelectorAll("#destinations .field-error").forEach((node) => {
      node.hidden = true;
      node.textContent = "";
    });
    document.querySelectorAll("#destinations [aria-invalid]").forEach((node) =>
      node.removeAttribute("aria-invalid"));
    for (const [name, message] of Object.entries(fields || {})) {
      const id = fieldId(dest, name);
      const error = document.getElementById(id + "-error");
      const input = document.getElementById(id);
      if (error) {
        error.textContent = message;
        error.hidden = false;
      }
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    }
    if (first) (first.querySelector ? first.querySelector("input") || first : first).focus();
  }

  async function save(dest, d, form) {
    const status = document.getElementById("status-" + dest);
    const { ok, body } = await api("/api/destinations/" + dest + "/settings",
      { method: "POST", json: formBody(d, form) });
    if (!ok) {
      showErrors(dest, body.fields);
      put(status, banner("critical", body.fields
        ? "Not saved: fix the fields marked below."
        : "Not saved: " + (body.error || "try again.")));
      return;
    }
    await loadDestinations();
    put(document.getElementById("status-" + dest),
      banner("success", "Saved." + (body.resumed ? " " + body.resumed +
        " held events are being sent." : "")));
    refresh();
    loadConflicts();
  }

  async function sendTest(dest, title) {
    const target = document.getElementById("test-answer-" + dest);
    put(target, el("p", { class: "subdued", role: "status" },
      "Sending a test event to " + title + "…"));
    const { ok, body } = await api("/api/destinations/" + dest + "/test-event",
      { method: "POST" });
    if (!ok) return put(target, banner("critical", body.error || "Not sent."));
    put(target,
      banner(body.accepted ? "success" : "critical", body.message),
      body.payload ? el("details", {}, el("summary", {}, "What was sent"),
        el("pre", {}, JSON.stringify(body.payload, null, 2))) : null);
  }

  async function connect(dest) {
    const { ok, body } = await api("/api/destinations/" + dest + "/connect",
      { method: "POST" });
    const status = document.getElementById("status-" + dest);
    if (!ok) return put(status, banner("critical", body.error || "Cannot connect."));
    window.open(body.authorize_url, "_blank", "noopener");
    put(status, banner("info",
      "Allow Relay in the window that opened, then come back and reload."));
  }

  // After "Connect with …": choose the ad account and its tag.
  async function loadAccounts(dest) {
    const { ok, body } = await api("/api/destinations/" + dest + "/accounts");
    const target = document.getElementById("accounts-" + dest);
    if (!ok) return put(target, banner("critical", body.error || "Cannot list accounts."));
    const account = el("select", { id: "account-" + dest },
      body.result.map((a) => el("option", { value: a.id },
        a.name + " (" + a.id + (a.detail ? ", " + a.detail : "") + ")")));
    const tag = el("select", { id: "tag-" + dest });
    const loadTags = async () => {
      const answer = await api("/api/destinations/" + dest + "/accounts/" +
        encodeURIComponent(account.value) + "/tags");
      put(tag, el("option", { value: "" }, "Any (let Relay pick)"),
        (answer.ok ? answer.body.result : []).map((t) =>
          el("option", { value: t.id }, t.name + " (" + t.id + ")")));
    };
    account.addEventListener("change", loadTags);
    put(target,
      el("label", { for: "account-" + dest }, "Ad account"), account,
      el("label", { for: "tag-" + dest }, "Pinterest Tag"), tag,
      el("div", { class: "actions" }, el("button", { type: "button",
        onclick: () => chooseAccount(dest, account.value, tag.value) },
        "Use this account")));
    if (body.result.length) await loadTags();
  }

  async function chooseAccount(dest, accountId, tagId) {
    const json = { account_id: accountId };
    if (tagId) json.tag_id = tagId;
    const { ok, body } = await api("/api/destinations/" + dest + "/account",
      { method: "POST", json: json });
    if (!ok) {
      return put(document.getElementById("status-" + dest),
        banner("critical", body.error || "Not saved."));
    }
    await loadDestinations();
    put(document.getElementById("status-" + dest),
      banner("success", "Connected to ad account " + accountId + "."));
    refresh();
    loadConflicts();
  }

  // -- conflicts ---------------------------------------------------------------

  async function loadConflicts() {
    const { ok, body } = await api("/api/conflicts");
    if (!ok || !body.checks.length) return fill("conflicts");
    fill("conflicts", el("h3", {}, "Conflict check"), body.checks.map((check) =>
      el("div", {},
        el("p", {}, "Last checked " + when(check.checked_at) + ": " + check.verdict),
        check.findings.map((f) => finding(check.destination, f)))));
  }

  function finding(dest, f) {
    const kind = f.verdict === "conflict" ? "critical"
      : f.verdict === "ok" ? "success" : "warning";
    return el("div", { class: "banner " + kind },
      el("strong", {}, f.signal + ": " + f.summary),
      el("p", { class: "help" }, f.evidence),
      f.steps.length ? el("ol", { class: "steps" }, f.steps.map((s) => el("li", {}, s))) : null,
      f.verdict === "ok" ? null : f.acknowledged
        ? el("p", {}, "Acknowledged.")
        : el("button", { type: "button", onclick: () => acknowledge(dest, f.key) },
            "I have dealt with this"));
  }

  async function acknowledge(dest, key) {
    await api("/api/conflicts/" + dest + "/acknowledge", { method: "POST", json: { key: key } });
    loadConflicts();
  }

  // -- activity ----------------------------------------------------------------

  function period() {
    return document.querySelector('input[name="period"]:checked').value;
  }

  async function loadStats() {
    const { ok, body } = await api("/api/stats?period=" + period());
    if (!ok) return fill("stats", banner("critical", body.error || "Could not load."));
    if (!body.destinations.length) {
      return fill("stats", el("p", { class: "subdued" }, "Nothing sent yet."));
    }
    fill("stats", body.destinations.map((d) => destinationStats(d, body.period)));
    await loadAccuracy(body.period);
  }

  async function loadAccuracy(span) {
    const { ok, body } = await api("/api/accuracy?period=" + span);
    for (const d of ok ? body.destinations : []) {
      const target = document.getElementById("accuracy-" + d.name);
      if (target) put(target, accuracy(d, body));
    }
  }

  function metric(label, value, id) {
    return el("div", { class: "metric" }, el("dt", {}, label),
      el("dd", { "data-metric": id }, value));
  }

  function destinationStats(d, span) {
    const c = d.counts;
    const quality = d.match_quality;
    return el("div", { class: "destination-stats", "data-destination": d.name },
      el("h3", {}, d.title),
      el("dl", { class: "metrics" },
        metric("Received", c.received, "received"),
        metric("Sent", c.sent, "sent"),
        metric("Failed", c.failed, "failed"),
        metric("Retrying", c.retrying, "retrying"),
        metric("Held", c.held, "held"),
        metric("Skipped", c.skipped, "skipped"),
        metric("Delivery rate", percent(d.delivery_rate), "delivery_rate"),
        metric("Match quality (estimate)",
          quality ? quality.score + " / 10, " + quality.label : "–", "match_quality")),
      d.skipped_reasons.length ? el("div", {}, el("h4", {}, "Why events were skipped"),
        el("ul", { class: "skipped" }, d.skipped_reasons.map((r) =>
          el("li", {}, r.reason + ": " + r.count)))) : null,
      el("h4", {}, "Match keys on sent events"),
      el("ul", { class: "bars" }, Object.entries(d.match_keys).map(([key, share]) =>
        el("li", {}, el("span", {}, KEY_LABELS[key] || key),
          el("span", { class: "bar", role: "img", "aria-label": percent(share) },
            el("span", { style: "width:" + Math.round((share || 0) * 100) + "%" })),
          el("span", {}, percent(share))))),
      el("h4", {}, "Over time"),
      chart(d.series, span),
      el("div", { class: "accuracy", id: "accuracy-" + d.name },
        el("h4", {}, "Accuracy: orders against purchases delivered"),
        el("p", { class: "subdued" }, "Asking Shopify for its orders…")));
  }

  function chart(series, span) {
    const width = 600, height = 160, pad = 20;
    const most = Math.max(1, ...series.map((b) => b.sent + b.failed + b.other));
    const step = (width - pad) / series.length;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    const total = series.reduce((n, b) => n + b.sent + b.failed + b.other, 0);
    svg.setAttribute("aria-label", "Events per " + (span === "24h" ? "hour" : "day") +
      ": " + total + " in all");
    series.forEach((bucket, index) => {
      let top = height - pad;
      for (const kind of ["sent", "failed", "other"]) {
        const h = (bucket[kind] / most) * (height - 2 * pad);
        if (!h) continue;
        top -= h;
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", pad + index * step + 1);
        rect.setAttribute("y", top);
        rect.setAttribute("width", Math.max(1, step - 2));
        rect.setAttribute("height", h);
        rect.setAttribute("class", kind);
        rect.setAttribute("data-count", bucket[kind]);
        const title = document.createElementNS(ns, "title");
        title.textContent = when(bucket.start) + ": " + bucket[kind] + " " + kind;
        rect.append(title);
        svg.append(rect);
      }
    });
    for (const [x, anchor, text] of [[pad, "start", when(series[0].start)],
      [width, "end", "now"]]) {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", x);
      label.setAttribute("y", height - 4);
      label.setAttribute("text-anchor", anchor);
      label.setAttribute("class", "axis");
      label.textContent = text;
      svg.append(label);
    }
    const top = document.createElementNS(ns, "text");
    top.setAttribute("x", 0);
    top.setAttribute("y", pad - 6);
    top.setAttribute("class", "axis");
    top.textContent = String(most);
    svg.append(top);
    return el("figure", {}, svg, el("figcaption", { class: "legend" },
      el("span", { style: "--c: var(--sent)" }, "sent"),
      el("span", { style: "--c: var(--failed)" }, "failed"),
      el("span", { style: "--c: var(--other)" }, "skipped, waiting or held")));
  }

  function accuracy(a, report) {
    const source = report.shopify_orders === null
      ? report.note
      : "Shopify lists " + report.shopify_orders + " orders in this period" +
        (report.shopify_complete ? "." : " (the first 1,000 were compared).");
    return [
      el("h4", {}, "Accuracy: orders against purchases delivered"),
      el("p", { "data-metric": "accuracy" },
        a.delivered + " of " + a.orders + " orders delivered as purchases."),
      el("p", { class: "help" }, source),
      a.gaps.length ? el("ul", { class: "gaps" }, a.gaps.map((g) =>
        el("li", {}, g.count + " × " + g.reason + " (orders " + g.orders.join(", ") +
          (g.count > g.orders.length ? ", …" : "") + ")"))) : null,
    ];
  }

  // -- recent events -------------------------------------------------------

  const PAGE = 50;

  // The table's first page; with `before`, the next older page below it.
  async function loadEvents(before) {
    const status = document.getElementById("status-filter").value;
    let path = "/api/deliveries?limit=" + PAGE;
    if (status) path += "&status=" + encodeURIComponent(status);
    if (before) path += "&before=" + before;
    const { ok, body } = await api(path);
    if (!ok) return fill("event-table", banner("critical", body.error || "Could not load."));
    const rows = body.deliveries;
    const older = document.getElementById("older");
    older.hidden = rows.length < PAGE;
    older.onclick = () => loadEvents(rows[rows.length - 1].id);
    const existing = document.querySelector("#event-table tbody");
    if (before && existing) return existing.append(...rows.map(eventRow));
    if (!rows.length) {
      return fill("event-table", el("p", { class: "subdued" },
        status ? "No " + status + " events." : "No events yet."));
    }
    fill("event-table", el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Time", "Event", "Destination", "Status",
        "Message", "Match keys", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map(eventRow)))));
  }

  function eventRow(d) {
    const detail = [d.reason, d.http_status ? "HTTP " + d.http_status : null, d.message]
      .filter(Boolean).join(" · ");
    return el("tr", { "data-delivery": d.id },
      el("td", {}, when(d.created_at)),
      el("td", {}, d.event + " " + d.event_id),
      el("td", {}, d.destination + (d.test_mode ? " (test)" : "")),
      el("td", {}, el("span", { class: "badge " + d.status }, d.status)),
      el("td", {}, detail || "–"),
      el("td", {}, d.match_keys.join(", ") || "–"),
      el("td", {}, el("button", { type: "button", onclick: () => openPayload(d.id),
        "aria-label": "Payload of " + d.event + " " + d.event_id }, "Payload")));
  }

  async function openPayload(id) {
    const { ok, body } = await api("/api/deliveries/" + id);
    const text = !ok ? body.error || "Could not load."
      : body.payload ? JSON.stringify(body.payload, null, 2)
      : "Nothing was sent (" + body.status + (body.reason ? ": " + body.reason : "") + ").";
    showDialog("Payload as sent", text);
  }

  function showDialog(title, text) {
    document.getElementById("payload-title").textContent = title;
    document.getElementById("payload-body").textContent = text;
    document.getElementById("payload-dialog").showModal();
  }

  // -- privacy ---------------------------------------------------------------

  async function loadPrivacy() {
    const { ok, body } = await api("/api/privacy/reports");
    if (!ok) return fill("privacy-reports", banner("critical", body.error || "Could not load."));
    fill("privacy-reports", body.reports.length
      ? el("ul", {}, body.reports.map((r) => el("li", {},
          "Customer data request " + (r.data_request_id || r.id) + ", answered " +
          when(r.created_at) + ", kept until " + when(r.expires_at) + " ",
          el("button", { type: "button", onclick: () => openReport(r.id) }, "Open"))))
      : el("p", { class: "subdued" }, "No customer data requests."));
  }

  async function openReport(id) {
    const { ok, body } = await api("/api/privacy/reports/" + id);
    showDialog("Customer data report",
      ok ? JSON.stringify(body, null, 2) : body.error || "Could not load.");
  }

  function refresh() {
    return Promise.all([loadHealth(), loadStats(), loadEvents()]);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("refresh").addEventListener("click", refresh);
    document.getElementById("status-filter").addEventListener("change", () => loadEvents());
    document.querySelectorAll('input[name="period"]').forEach((radio) =>
      radio.addEventListener("change", loadStats));
    Promise.all([refresh(), loadDestinations(), loadConflicts(), loadPrivacy()])
      .then(() => document.body.setAttribute("data-loaded", "true"));
  });
})();
