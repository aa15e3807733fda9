// The dashboard page: polls /api/snapshot every second and redraws. No framework; every text
// from the server goes through textContent (dead-letter reasons and keys are untrusted).
"use strict";
(function () {
  var charts = {};
  var chartNames = ["messages", "bytes", "lag", "spark_rows", "spark_duration", "latency", "cassandra_writes"];
  var restarts = {};
  var lastPid = {};
  window.dashboard = { charts: charts, restarts: restarts, snapshot: null };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (attrs[k] === null || attrs[k] === undefined) continue;
      if (k === "class") e.className = attrs[k];
      else if (k === "text") e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function fmt(n, digits) {
    if (n === null || n === undefined) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
  }
  function size(b) {
    if (b === null || b === undefined) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return fmt(b, i ? 1 : 0) + " " + units[i];
  }
  function table(headers, rows) {
    var head = el("tr", null, headers.map(function (h) { return el("th", { text: h.replace(/^#/, ""), class: h[0] === "#" ? "num" : null }); }));
    var body = rows.map(function (r) {
      return el("tr", r.attrs || null, r.cells.map(function (c, i) {
        var cell = c instanceof Node ? c : el("span", { text: c === null || c === undefined ? "–" : String(c) });
        return el("td", { class: headers[i] && headers[i][0] === "#" ? "num" : null }, [cell]);
      }));
    });
    return el("table", null, [el("thead", null, [head]), el("tbody", null, body)]);
  }
  function setBody(id, section, build) {
    var body = document.querySelector("#" + id + " > .body");
    var parts = [];
    if (section && section.error) parts.push(el("div", { class: "error", text: section.error }));
    if (section && section.data) {
      try { parts = parts.concat(build(section.data)); } catch (e) { window.__errors.push(String(e)); }
    } else if (!section || !section.error) {
      parts.push(el("span", { class: "muted", text: "waiting for data…" }));
    }
    body.className = "body";
    body.replaceChildren.apply(body, parts);
  }
  function link(href, text) { return el("a", { href: href, target: "_blank", rel: "noopener", text: text || href }); }

  function services(list) {
    list.forEach(function (s) {
      if (s.pid && lastPid[s.name] && lastPid[s.name] !== s.pid) restarts[s.name] = (restarts[s.name] || 0) + 1;
      if (s.pid) lastPid[s.name] = s.pid;
    });
    return [table(["service", "health", "#pid", "#RSS MiB", "#restarts seen", "ports", "UI / detail"], list.map(function (s) {
      return { attrs: { "data-testid": "service-" + s.name }, cells: [
        s.name,
        el("span", { class: s.healthy ? "ok" : "bad", "data-testid": "service-" + s.name + "-health", "data-healthy": String(s.healthy), text: s.healthy ? "● healthy" : "● down" }),
        s.pid, fmt(s.rss_mib), fmt(restarts[s.name] || 0), s.ports.join(","),
        s.healthy ? (s.ui ? link(s.ui) : "") : s.detail
      ] };
    }))];
  }
  function kafka(k, snap) {
    var lag = el("div", null, Object.keys(k.lag).map(function (engine) {
      return el("span", { class: "big", "data-testid": "lag-" + engine }, [engine + " lag " + fmt(k.lag[engine])]);
    }));
    var rate = el("span", { class: "big", "data-testid": "messages-per-sec" }, [fmt(k.messages_per_sec, 1) + " msg/s"]);
    var bytesRate = el("span", { class: "big", "data-testid": "bytes-per-sec" }, [k.bytes_per_sec === null ? "– B/s" : size(k.bytes_per_sec) + "/s"]);
    var bytesNote = k.log_dir ? "bytes: segment files in " + k.log_dir : "bytes: the broker's log folder is not on this machine";
    var own = k.topics.filter(function (t) { return t.end_offset !== null; });
    var others = k.topics.filter(function (t) { return t.end_offset === null; });
    var rest = others.length ? el("details", null, [el("summary", { text: others.length + " other topic(s)" }),
      el("div", { class: "muted", text: others.map(function (t) { return t.name + " (" + t.partitions + (t.bytes === null ? "" : ", " + size(t.bytes)) + ")"; }).join(", ") })]) : null;
    return [el("div", null, [rate, bytesRate, lag]), table(["topic", "#partitions", "#end offset", "#records", "#bytes", "#size", "per partition (low..high)"], own.map(function (t) {
      return { cells: [t.name, t.partitions,
        el("span", { "data-testid": "topic-" + t.name + "-end-offset", text: t.end_offset === null ? "–" : String(t.end_offset) }),
        fmt(t.records),
        el("span", { "data-testid": "topic-" + t.name + "-bytes", text: t.bytes === null ? "–" : fmt(t.bytes) }),
        size(t.bytes),
        t.per_partition.map(function (p) { return p.partition + ": " + p.low + ".." + p.high; }).join("  ")] };
    })), el("div", { class: "muted", text: bytesNote }), rest];
  }
  function spark(s) {
    var rows = s.queries.map(function (q) {
      return { cells: [q.name, el("span", { class: q.active ? "ok" : "bad", text: q.active ? "active" : "stopped" }),
        el("span", { "data-testid": "spark-batch-" + q.name, text: q.batch_id === null ? "–" : String(q.batch_id) }),
        q.checkpoint_batch === null ? "–" : String(q.checkpoint_batch),
        fmt(q.input_rows_per_sec, 1), fmt(q.processed_rows_per_sec, 1), fmt(q.batch_duration_ms), fmt(q.num_input_rows),
        q.last_error ? el("span", { class: "error", text: q.last_error }) : "none"] };
    });
    var parts = [];
    if (!rows.length) parts.push(el("div", { class: "muted", text: "no query running (start the job with `pipeline submit`)" }));
    else parts.push(table(["query", "state", "#batch", "#checkpoint batch", "#input rows/s", "#processed rows/s", "#batch ms", "#rows", "last error"], rows));
    parts.push(el("div", null, s.links.map(function (l) { return el("span", null, [l[0] + ": ", link(l[1]), "  "]); })));
    return parts;
  }
  function latency(l) {
    return [el("div", null, [
      el("span", { class: "big", "data-testid": "latency-p50" }, ["p50 " + fmt(l.p50_ms) + " ms"]),
      el("span", { class: "big", "data-testid": "latency-p99" }, ["p99 " + fmt(l.p99_ms) + " ms"]),
      el("span", { class: "muted", text: l.samples + " rows measured in the last minute" })])];
  }
  function cassandra(c) {
    var parts = [el("div", null, [el("span", { class: "big", "data-testid": "cassandra-estimate" }, ["~" + fmt(c.estimated_rows) + " rows"]),
      el("span", { class: "muted", text: c.table + " (Cassandra's estimate, refreshed by Cassandra every few minutes)" })])];
    var writes = Object.keys(c.writes_per_sec_by_engine).map(function (e) { return e + " ~" + fmt(c.writes_per_sec_by_engine[e], 1); }).join(", ");
    parts.push(el("div", null, [el("span", { class: "big", "data-testid": "cassandra-writes-per-sec" }, [fmt(c.writes_per_sec, 1) + " rows/s"]),
      el("span", { class: "muted" }, ["written (", el("span", { "data-testid": "cassandra-writes-total", text: fmt(c.writes_total) }),
        " since Cassandra started" + (writes ? "; by engine " + writes : "") + ")"])]));
    if (c.writes_error) parts.push(el("div", { class: "error", text: c.writes_error }));
    var est = Object.keys(c.estimated_by_engine);
    if (est.length) parts.push(table(["engine", "#estimated rows"], est.map(function (e) { return { cells: [e, fmt(c.estimated_by_engine[e])] }; })));
    if (c.exact) parts.push(el("div", null, [el("div", { class: "muted", text: "exact count at " + new Date(c.exact.at_ms).toLocaleTimeString() + " (" + fmt(c.exact.seconds, 1) + " s): " + fmt(c.exact.total) + " rows" }),
      table(["engine", "#rows"], Object.keys(c.exact.by_engine).map(function (e) { return { cells: [e, fmt(c.exact.by_engine[e])] }; }))]));
    if (c.exact_running) parts.push(el("div", { class: "muted", text: "counting…" }));
    return parts;
  }
  function dlq(d) {
    var reasons = Object.keys(d.by_reason).sort(function (a, b) { return d.by_reason[b] - d.by_reason[a]; });
    return [el("div", null, [el("span", { class: "big", "data-testid": "dlq-count" }, [String(d.count)]),
        el("span", { class: "muted", text: "records in " + d.topic + " (" + fmt(d.read) + " read by the dashboard)" })]),
      table(["reason", "#count"], reasons.map(function (r) { return { cells: [r, fmt(d.by_reason[r])] }; })),
      el("h3", { text: "latest " + d.latest.length }),
      table(["time", "reason", "engine", "source offset", "key", "dlq position"], d.latest.map(function (x) {
        return { attrs: { "data-testid": "dlq-row" }, cells: [x.timestamp_ms ? new Date(x.timestamp_ms).toLocaleTimeString() : "–",
          el("span", { "data-testid": "dlq-reason", text: x.reason }), x.engine, x.source_offset, x.key, x.partition + ":" + x.offset] };
      }))];
  }
  function registry(r) {
    return [el("div", { class: "muted", text: r.subjects_total + " subject(s); global compatibility " + (r.global_compatibility || "–") }),
      table(["subject", "versions", "compatibility"], r.subjects.map(function (s) {
        return { cells: [s.subject, s.versions.join(", "), s.compatibility || "(global)"] };
      }))];
  }
  function audit(a) {
    return [table(["", "#rows"], [
      { cells: ["audited" + (a.audited_is_estimate ? " (estimate)" : ""), el("span", { "data-testid": "audit-audited", text: fmt(a.audited) })] },
      { cells: ["outbox pending", el("span", { "data-testid": "audit-outbox", text: fmt(a.outbox_pending) })] },
      { cells: ["rejected", el("span", { "data-testid": "audit-rejected", text: fmt(a.rejected) })] }])];
  }

  function when(t) { return t ? new Date(t).toLocaleString() : "–"; }
  function airflow(a) {
    var rows = [];
    a.dags.forEach(function (d) {
      if (!d.runs.length) rows.push({ cells: [link(d.url, d.dag_id), d.paused ? "paused" : "active", "no run yet", "", "", "", ""] });
      d.runs.forEach(function (r) {
        rows.push({ attrs: { "data-testid": "airflow-run", "data-dag": d.dag_id, "data-run-id": r.run_id, "data-state": r.state },
          cells: [link(d.url, d.dag_id), d.paused ? "paused" : "active", link(r.url, r.run_id), r.run_type,
            el("span", { class: r.state === "success" ? "ok" : (r.state === "failed" ? "bad" : "muted"), text: r.state }),
            when(r.start_date), when(r.end_date)] });
      });
    });
    return [el("div", null, ["Airflow UI: ", link(a.ui)]),
      table(["DAG", "DAG state", "run", "type", "state", "started", "ended"], rows)];
  }

  var colors = ["#0969da", "#cf222e", "#1a7f37", "#8250df"];
  function drawChart(name, c) {
    var data = [c.x].concat(c.ys);
    var box = document.getElementById("chart-" + name);
    if (!charts[name]) {
      var opts = { width: Math.max(300, box.clientWidth || 420), height: 160, legend: { show: true },
        scales: { x: { time: true } }, axes: [{}, { size: 60 }],
        series: [{}].concat(c.labels.map(function (l, i) { return { label: l, stroke: colors[i % colors.length], width: 1.5, spanGaps: true }; })) };
      charts[name] = new uPlot(opts, data, box);
      box.setAttribute("data-testid", "chart-" + name);
    } else {
      charts[name].setData(data);
    }
  }

  function render(snap) {
    window.dashboard.snapshot = snap;
    document.getElementById("topic-name").textContent = "topic " + snap.topic;
    setBody("services", snap.services, services);
    setBody("kafka", snap.kafka, function (k) { return kafka(k, snap); });
    setBody("spark", snap.spark, spark);
    setBody("latency", snap.latency, latency);
    setBody("cassandra", snap.cassandra, cassandra);
    setBody("dlq", snap.dlq, dlq);
    setBody("registry", snap.registry, registry);
    setBody("audit", snap.audit, audit);
    var af = document.getElementById("airflow");
    af.hidden = !snap.airflow_enabled;
    if (snap.airflow_enabled) setBody("airflow", snap.airflow, airflow);
    chartNames.forEach(function (n) { if (!document.getElementById("chart-" + n)) return; try { drawChart(n, snap.charts[n]); } catch (e) { window.__errors.push("chart " + n + ": " + e); } });
    var status = document.getElementById("status");
    status.textContent = "updated " + new Date(snap.now_ms).toLocaleTimeString();
    if (snap.ready && !document.querySelector("[data-testid=ready]")) {
      document.getElementById("ready-slot").appendChild(el("span", { "data-testid": "ready", class: "ok", text: "● live" }));
    }
  }

  function poll() {
    fetch("/api/snapshot", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(render)
      .catch(function (e) { document.getElementById("status").textContent = "dashboard unreachable: " + e.message; })
      .then(function () { setTimeout(poll, 1000); });
  }
  document.getElementById("exact-count").addEventListener("click", function () {
    fetch("/api/cassandra/count", { method: "POST" });
  });
  poll();
})();
