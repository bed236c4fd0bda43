// Job pages: the job page
// polls /jobs/<id>.json until the job has ended (state, percentage, elapsed, files).
// A static file, because the Content-Security-Policy allows scripts only from 'self'.
(function () {
  var local = new Intl.DateTimeFormat(undefined, {day: "numeric", month: "short", year: "numeric",
                                                  hour: "2-digit", minute: "2-digit", second: "2-digit"});
  function setTime(id, iso) {
    var dd = document.getElementById(id);
    if (!dd || !iso || dd.querySelector("time")) return;
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.textContent = local.format(new Date(iso));
    dd.appendChild(t);
  }
  function duration(seconds) {
    if (seconds < 1) return "under a second";
    seconds = Math.floor(seconds);
    if (seconds < 60) return seconds + " s";
    var m = Math.floor(seconds / 60), s = seconds % 60;
    if (m < 60) return m + " min " + (s < 10 ? "0" : "") + s + " s";
    var h = Math.floor(m / 60); m = m % 60;
    return h + " h " + (m < 10 ? "0" : "") + m + " min";
  }

  var box = document.getElementById("job");
  if (!box) return;
  var elapsed = document.getElementById("job-elapsed");
  function tick() {
    var started = elapsed.dataset.started, ended = elapsed.dataset.ended;
    if (!started) return;
    var end = ended ? new Date(ended) : new Date();
    elapsed.textContent = duration((end - new Date(started)) / 1000);
  }
  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }
  function showFiles(files) {
    if (!files || !files.length) return;
    var body = document.getElementById("job-files-rows");
    body.textContent = "";
    files.forEach(function (f) {
      var tr = document.createElement("tr");
      tr.className = "outcome-" + f.status;
      cell(tr, f.file_name);
      var o = cell(tr, ""), strong = document.createElement("strong");
      strong.textContent = f.outcome; o.appendChild(strong);
      cell(tr, f.rows_read.toLocaleString(), "num");
      cell(tr, f.rows_written.toLocaleString(), "num");
      cell(tr, f.rows_rejected.toLocaleString(), "num");
      if (f.run_url) {
        var link = document.createElement("a");
        link.href = f.run_url; link.textContent = "run #" + f.run_id;
        cell(tr, "", "nowrap").appendChild(link);
      } else {
        cell(tr, "no run", "nowrap");  // a file of a .zip that no integration reads: ignored
      }
      cell(tr, f.message);
      body.appendChild(tr);
    });
    document.getElementById("job-files").hidden = false;
  }
  function show(job) {
    var status = document.getElementById("job-status");
    status.textContent = job.label;
    status.className = "state state-" + job.status;
    box.className = "job job-" + job.status;
    document.getElementById("job-phase").textContent = job.phase || "";
    document.getElementById("job-message").textContent = job.message || "";
    if (job.status !== "queued") {
      var waiting = document.getElementById("job-waiting");
      if (waiting) waiting.remove();
      document.querySelectorAll(".flash-info").forEach(function (f) { f.hidden = true; });
    }
    var bar = document.getElementById("job-progress");
    if (job.percent !== null) { bar.value = job.percent; document.getElementById("job-percent").textContent = job.percent + "%"; }
    setTime("job-started", job.started_at);
    setTime("job-ended", job.ended_at);
    elapsed.dataset.started = job.started_at || "";
    elapsed.dataset.ended = job.ended_at || "";
    tick();
    showFiles(job.files);
    if (job.finished) {
      var cancel = document.getElementById("job-cancel");
      if (cancel) cancel.hidden = true;
      if (job.result_url) { var r = document.getElementById("job-result"); r.hidden = false; r.querySelector("a").href = job.result_url; }
    }
    return job.finished;
  }
  if (box.dataset.finished === "yes") return;
  var ticking = setInterval(tick, 1000);
  function poll() {
    fetch(box.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (job) { if (show(job)) { clearInterval(ticking); } else { setTimeout(poll, 700); } })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
