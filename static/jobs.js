// Live progress on the job page: polls /jobs/<id>.json until the job has finished.
// A static file, because the Content-Security-Policy allows scripts only from 'self'.
(function () {
  var box = document.getElementById("job");
  if (box.dataset.finished === "yes") return;
  function show(job) {
    document.getElementById("job-status").textContent = job.status;
    document.getElementById("job-phase").textContent = job.phase || "";
    document.getElementById("job-message").textContent = job.message || "";
    var bar = document.getElementById("job-progress");
    if (job.percent !== null) { bar.value = job.percent; document.getElementById("job-percent").textContent = job.percent + "%"; }
    if (job.finished && job.result_url) { var r = document.getElementById("job-result"); r.hidden = false; r.querySelector("a").href = job.result_url; }
    return job.finished;
  }
  function poll() {
    fetch(box.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (job) { if (!show(job)) setTimeout(poll, 1000); })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
