// liberation-node status page: live updates without reloading.
// The server names the sections that changed (server-sent events at /api/stream); each is
// fetched again as server-rendered, escaped HTML from /fragment/<section> and swapped in place.
// Nothing from the stream is ever inserted as HTML: only section names are read from it.
(() => {
  "use strict";
  const badge = document.getElementById("live");
  const last = new Map(); // section -> last HTML shown
  const busy = new Set(); // sections being fetched
  const again = new Set(); // sections that changed again meanwhile
  const NAME = /^[a-z]{1,32}$/;
  let stream = null;
  let retry = null;

  function show(state, text) {
    if (!badge) return;
    badge.className = "live " + state;
    badge.textContent = text;
  }

  function seen(root) {
    const ids = new Set();
    root.querySelectorAll("li.msg[data-id]").forEach((li) => ids.add(li.dataset.id));
    return ids;
  }

  async function refresh(name) {
    if (!NAME.test(name)) return;
    if (busy.has(name)) { again.add(name); return; }
    busy.add(name);
    try {
      const response = await fetch("/fragment/" + name, { cache: "no-store" });
      if (!response.ok) return;
      const html = await response.text();
      const current = document.getElementById("sec-" + name);
      if (!current || last.get(name) === html) return;
      const template = document.createElement("template");
      template.innerHTML = html.trim();
      const next = template.content.firstElementChild;
      if (!next || next.id !== current.id) return;
      const before = seen(current);
      next.querySelectorAll("li.msg[data-id]").forEach((li) => {
        if (before.size && !before.has(li.dataset.id)) li.classList.add("fresh");
      });
      current.replaceWith(next);
      last.set(name, html);
    } catch (_) {
      // the node may be restarting: the stream reconnects and refreshes everything
    } finally {
      busy.delete(name);
      if (again.delete(name)) refresh(name);
    }
  }

  function sectionsOf(event) {
    try {
      const data = JSON.parse(event.data);
      return Array.isArray(data.sections) ? data.sections.filter((s) => typeof s === "string") : [];
    } catch (_) {
      return [];
    }
  }

  function connect() {
    retry = null;
    if (typeof EventSource === "undefined") { show("off", "static"); return; }
    stream = new EventSource("/api/stream");
    stream.addEventListener("open", () => show("on", "live"));
    stream.addEventListener("hello", (event) => sectionsOf(event).forEach(refresh));
    stream.addEventListener("change", (event) => sectionsOf(event).forEach(refresh));
    stream.addEventListener("error", () => {
      if (stream.readyState === EventSource.CLOSED) {
        // refused (too many live pages, or the node stopped): try again a little later
        show("off", "offline");
        stream.close();
        if (retry === null) retry = setTimeout(connect, 10000);
      } else {
        show("off", "reconnecting");
      }
    });
  }

  connect();
})();
